package esm

import (
	"strconv"
	"strings"
	"time"
)

// applyDefaults fills the per-source defaults of spec section 8 into a new
// mapping's configuration, so that they are stored and echoed.
func applyDefaults(src Source, cfg *Config, uuid string) {
	if cfg.Enabled == nil {
		cfg.Enabled = ptr(true)
	}
	if cfg.BatchSize == nil {
		if src == SourceSQS {
			cfg.BatchSize = ptr[int64](10)
		} else {
			cfg.BatchSize = ptr[int64](100)
		}
	}
	switch src {
	case SourceKinesis, SourceDynamoDB, SourceSQS:
		// Kafka, MQ and DocumentDB keep a 500 ms default window that the
		// API cannot express in whole seconds: the member stays absent.
		if cfg.MaximumBatchingWindowInSeconds == nil {
			cfg.MaximumBatchingWindowInSeconds = ptr[int64](0)
		}
		if cfg.FunctionResponseTypes == nil {
			cfg.FunctionResponseTypes = []string{}
		}
	}
	if src.Stream() {
		if cfg.ParallelizationFactor == nil {
			cfg.ParallelizationFactor = ptr[int64](1)
		}
		if cfg.MaximumRecordAgeInSeconds == nil {
			cfg.MaximumRecordAgeInSeconds = ptr[int64](-1)
		}
		if cfg.MaximumRetryAttempts == nil {
			cfg.MaximumRetryAttempts = ptr[int64](-1)
		}
		if cfg.BisectBatchOnFunctionError == nil {
			cfg.BisectBatchOnFunctionError = ptr(false)
		}
		if cfg.TumblingWindowInSeconds == nil {
			cfg.TumblingWindowInSeconds = ptr[int64](0)
		}
		if cfg.DestinationConfig == nil {
			cfg.DestinationConfig = &DestinationConfig{}
		}
		if cfg.DestinationConfig.OnFailure == nil {
			cfg.DestinationConfig.OnFailure = &Destination{}
		}
	}
	switch src {
	case SourceKafka:
		if cfg.StartingPosition == nil {
			cfg.StartingPosition = ptr("TRIM_HORIZON")
		}
		if cfg.SelfManagedKafkaEventSourceConfig == nil {
			cfg.SelfManagedKafkaEventSourceConfig = &KafkaEventSourceConfig{}
		}
		if cfg.SelfManagedKafkaEventSourceConfig.ConsumerGroupId == nil {
			cfg.SelfManagedKafkaEventSourceConfig.ConsumerGroupId = ptr(uuid)
		}
	case SourceMSK:
		if cfg.AmazonManagedKafkaEventSourceConfig == nil {
			cfg.AmazonManagedKafkaEventSourceConfig = &KafkaEventSourceConfig{}
		}
		if cfg.AmazonManagedKafkaEventSourceConfig.ConsumerGroupId == nil {
			cfg.AmazonManagedKafkaEventSourceConfig.ConsumerGroupId = ptr(uuid)
		}
	case SourceDocumentDB:
		if cfg.DocumentDBEventSourceConfig.FullDocument == nil {
			cfg.DocumentDBEventSourceConfig.FullDocument = ptr("Default")
		}
	}
	if cfg.FilterCriteria != nil && len(cfg.FilterCriteria.Filters) == 0 {
		cfg.FilterCriteria = nil // an empty list is accepted and not echoed
	}
}

// userReason is the StateTransitionReason AWS reports for a user's change:
// "User action" for streams and DocumentDB, "USER_INITIATED" for SQS, Kafka
// and MQ (recordings; spec 4).
func userReason(src Source) string {
	if src.Stream() || src == SourceDocumentDB {
		return "User action"
	}
	return "USER_INITIATED"
}

// reportsProcessingResult says whether AWS shows LastProcessingResult for a
// source; it is absent for SQS.
func reportsProcessingResult(src Source) bool { return src != SourceSQS }

// EpochSeconds is a time rendered as a JSON number of seconds since the
// epoch with millisecond precision, as Lambda sends LastModified.
type EpochSeconds time.Time

// MarshalJSON renders e.g. 1569284520.333.
func (e EpochSeconds) MarshalJSON() ([]byte, error) {
	ms := time.Time(e).UnixMilli()
	return strconv.AppendFloat(nil, float64(ms)/1000, 'f', -1, 64), nil
}

// UnmarshalJSON accepts integer or fractional seconds.
func (e *EpochSeconds) UnmarshalJSON(b []byte) error {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return err
	}
	*e = EpochSeconds(epochToTime(f))
	return nil
}

// Configuration is EventSourceMappingConfiguration, the body of every
// mapping response (spec 4). Enabled, FunctionName and Tags are never part
// of it.
type Configuration struct {
	UUID                                string                       `json:"UUID"`
	EventSourceMappingArn               string                       `json:"EventSourceMappingArn"`
	StartingPosition                    *string                      `json:"StartingPosition,omitempty"`
	StartingPositionTimestamp           *float64                     `json:"StartingPositionTimestamp,omitempty"`
	BatchSize                           *int64                       `json:"BatchSize,omitempty"`
	MaximumBatchingWindowInSeconds      *int64                       `json:"MaximumBatchingWindowInSeconds,omitempty"`
	ParallelizationFactor               *int64                       `json:"ParallelizationFactor,omitempty"`
	EventSourceArn                      *string                      `json:"EventSourceArn,omitempty"`
	FilterCriteria                      *FilterCriteria              `json:"FilterCriteria,omitempty"`
	FunctionArn                         string                       `json:"FunctionArn"`
	LastModified                        EpochSeconds                 `json:"LastModified"`
	LastProcessingResult                string                       `json:"LastProcessingResult,omitempty"`
	State                               State                        `json:"State"`
	StateTransitionReason               string                       `json:"StateTransitionReason"`
	DestinationConfig                   *DestinationConfig           `json:"DestinationConfig,omitempty"`
	Topics                              []string                     `json:"Topics,omitempty"`
	Queues                              []string                     `json:"Queues,omitempty"`
	SourceAccessConfigurations          []SourceAccessConfiguration  `json:"SourceAccessConfigurations,omitempty"`
	SelfManagedEventSource              *SelfManagedEventSource      `json:"SelfManagedEventSource,omitempty"`
	MaximumRecordAgeInSeconds           *int64                       `json:"MaximumRecordAgeInSeconds,omitempty"`
	BisectBatchOnFunctionError          *bool                        `json:"BisectBatchOnFunctionError,omitempty"`
	MaximumRetryAttempts                *int64                       `json:"MaximumRetryAttempts,omitempty"`
	TumblingWindowInSeconds             *int64                       `json:"TumblingWindowInSeconds,omitempty"`
	FunctionResponseTypes               []string                     `json:"FunctionResponseTypes,omitzero"`
	AmazonManagedKafkaEventSourceConfig *KafkaEventSourceConfig      `json:"AmazonManagedKafkaEventSourceConfig,omitempty"`
	SelfManagedKafkaEventSourceConfig   *KafkaEventSourceConfig      `json:"SelfManagedKafkaEventSourceConfig,omitempty"`
	ScalingConfig                       *ScalingConfig               `json:"ScalingConfig,omitempty"`
	DocumentDBEventSourceConfig         *DocumentDBEventSourceConfig `json:"DocumentDBEventSourceConfig,omitempty"`
	KMSKeyArn                           *string                      `json:"KMSKeyArn,omitempty"`
	MetricsConfig                       *MetricsConfig               `json:"MetricsConfig,omitempty"`
	LoggingConfig                       *LoggingConfig               `json:"LoggingConfig,omitempty"`
	ProvisionedPollerConfig             *ProvisionedPollerConfig     `json:"ProvisionedPollerConfig,omitempty"`
}

// Configuration renders the mapping as the API returns it.
func (m *Mapping) Configuration() Configuration {
	c := m.Config.clone()
	out := Configuration{
		UUID:                                m.UUID,
		EventSourceMappingArn:               m.Arn,
		StartingPosition:                    c.StartingPosition,
		StartingPositionTimestamp:           c.StartingPositionTimestamp,
		BatchSize:                           c.BatchSize,
		MaximumBatchingWindowInSeconds:      c.MaximumBatchingWindowInSeconds,
		ParallelizationFactor:               c.ParallelizationFactor,
		EventSourceArn:                      c.EventSourceArn,
		FilterCriteria:                      c.FilterCriteria,
		FunctionArn:                         m.FunctionArn,
		LastModified:                        EpochSeconds(m.LastModified),
		State:                               m.State,
		StateTransitionReason:               m.StateTransitionReason,
		DestinationConfig:                   c.DestinationConfig,
		Topics:                              c.Topics,
		Queues:                              c.Queues,
		SourceAccessConfigurations:          c.SourceAccessConfigurations,
		SelfManagedEventSource:              c.SelfManagedEventSource,
		MaximumRecordAgeInSeconds:           c.MaximumRecordAgeInSeconds,
		BisectBatchOnFunctionError:          c.BisectBatchOnFunctionError,
		MaximumRetryAttempts:                c.MaximumRetryAttempts,
		TumblingWindowInSeconds:             c.TumblingWindowInSeconds,
		FunctionResponseTypes:               c.FunctionResponseTypes,
		AmazonManagedKafkaEventSourceConfig: c.AmazonManagedKafkaEventSourceConfig,
		SelfManagedKafkaEventSourceConfig:   c.SelfManagedKafkaEventSourceConfig,
		ScalingConfig:                       c.ScalingConfig,
		DocumentDBEventSourceConfig:         c.DocumentDBEventSourceConfig,
		KMSKeyArn:                           c.KMSKeyArn,
		MetricsConfig:                       c.MetricsConfig,
		LoggingConfig:                       c.LoggingConfig,
		ProvisionedPollerConfig:             c.ProvisionedPollerConfig,
	}
	if reportsProcessingResult(m.Source) || strings.HasPrefix(m.LastProcessingResult, "PROBLEM") {
		out.LastProcessingResult = m.LastProcessingResult
	}
	return out
}
