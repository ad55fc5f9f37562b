package esm

import (
	"time"
)

// Config is the body of CreateEventSourceMapping and UpdateEventSourceMapping,
// field for field (spec section 3). Every optional member is a pointer or a
// nil-able slice so that an Update can tell "absent" from "zero": an Update
// changes only the members present.
//
// The same struct, with defaults applied, is the effective configuration a
// Mapping keeps.
type Config struct {
	FunctionName                        *string                      `json:"FunctionName,omitempty"`
	EventSourceArn                      *string                      `json:"EventSourceArn,omitempty"`
	Enabled                             *bool                        `json:"Enabled,omitempty"`
	BatchSize                           *int64                       `json:"BatchSize,omitempty"`
	FilterCriteria                      *FilterCriteria              `json:"FilterCriteria,omitempty"`
	MaximumBatchingWindowInSeconds      *int64                       `json:"MaximumBatchingWindowInSeconds,omitempty"`
	ParallelizationFactor               *int64                       `json:"ParallelizationFactor,omitempty"`
	StartingPosition                    *string                      `json:"StartingPosition,omitempty"`
	StartingPositionTimestamp           *float64                     `json:"StartingPositionTimestamp,omitempty"`
	DestinationConfig                   *DestinationConfig           `json:"DestinationConfig,omitempty"`
	MaximumRecordAgeInSeconds           *int64                       `json:"MaximumRecordAgeInSeconds,omitempty"`
	BisectBatchOnFunctionError          *bool                        `json:"BisectBatchOnFunctionError,omitempty"`
	MaximumRetryAttempts                *int64                       `json:"MaximumRetryAttempts,omitempty"`
	TumblingWindowInSeconds             *int64                       `json:"TumblingWindowInSeconds,omitempty"`
	Topics                              []string                     `json:"Topics,omitempty"`
	Queues                              []string                     `json:"Queues,omitempty"`
	SourceAccessConfigurations          []SourceAccessConfiguration  `json:"SourceAccessConfigurations,omitempty"`
	SelfManagedEventSource              *SelfManagedEventSource      `json:"SelfManagedEventSource,omitempty"`
	FunctionResponseTypes               []string                     `json:"FunctionResponseTypes,omitempty"`
	AmazonManagedKafkaEventSourceConfig *KafkaEventSourceConfig      `json:"AmazonManagedKafkaEventSourceConfig,omitempty"`
	SelfManagedKafkaEventSourceConfig   *KafkaEventSourceConfig      `json:"SelfManagedKafkaEventSourceConfig,omitempty"`
	ScalingConfig                       *ScalingConfig               `json:"ScalingConfig,omitempty"`
	DocumentDBEventSourceConfig         *DocumentDBEventSourceConfig `json:"DocumentDBEventSourceConfig,omitempty"`
	KMSKeyArn                           *string                      `json:"KMSKeyArn,omitempty"`
	MetricsConfig                       *MetricsConfig               `json:"MetricsConfig,omitempty"`
	LoggingConfig                       *LoggingConfig               `json:"LoggingConfig,omitempty"`
	ProvisionedPollerConfig             *ProvisionedPollerConfig     `json:"ProvisionedPollerConfig,omitempty"`
	Tags                                map[string]string            `json:"Tags,omitempty"`
}

// FilterCriteria is {"Filters":[{"Pattern":"<json text>"}]}.
type FilterCriteria struct {
	Filters []Filter `json:"Filters"`
}

// Filter holds one pattern, kept as the JSON string the caller sent.
type Filter struct {
	Pattern *string `json:"Pattern,omitempty"`
}

// DestinationConfig is {"OnSuccess":{...},"OnFailure":{...}}. Only OnFailure
// is supported on event source mappings.
type DestinationConfig struct {
	OnSuccess *Destination `json:"OnSuccess,omitempty"`
	OnFailure *Destination `json:"OnFailure,omitempty"`
}

// Destination names an SQS queue, SNS topic, S3 bucket or kafka://topic.
type Destination struct {
	Destination *string `json:"Destination,omitempty"`
}

// SourceAccessConfiguration is {"Type": "...", "URI": "..."}.
type SourceAccessConfiguration struct {
	Type *string `json:"Type,omitempty"`
	URI  *string `json:"URI,omitempty"`
}

// SelfManagedEventSource is {"Endpoints":{"KAFKA_BOOTSTRAP_SERVERS":[...]}}.
type SelfManagedEventSource struct {
	Endpoints map[string][]string `json:"Endpoints,omitempty"`
}

// KafkaEventSourceConfig is the shape shared by
// AmazonManagedKafkaEventSourceConfig and SelfManagedKafkaEventSourceConfig.
type KafkaEventSourceConfig struct {
	ConsumerGroupId      *string               `json:"ConsumerGroupId,omitempty"`
	SchemaRegistryConfig *SchemaRegistryConfig `json:"SchemaRegistryConfig,omitempty"`
}

// SchemaRegistryConfig configures a Glue or Confluent schema registry.
type SchemaRegistryConfig struct {
	SchemaRegistryURI       *string                     `json:"SchemaRegistryURI,omitempty"`
	EventRecordFormat       *string                     `json:"EventRecordFormat,omitempty"`
	AccessConfigs           []SourceAccessConfiguration `json:"AccessConfigs,omitempty"`
	SchemaValidationConfigs []SchemaValidationConfig    `json:"SchemaValidationConfigs,omitempty"`
}

// SchemaValidationConfig is {"Attribute":"KEY"|"VALUE"}.
type SchemaValidationConfig struct {
	Attribute *string `json:"Attribute,omitempty"`
}

// ScalingConfig is {"MaximumConcurrency": 2..1000} (SQS only).
type ScalingConfig struct {
	MaximumConcurrency *int64 `json:"MaximumConcurrency,omitempty"`
}

// DocumentDBEventSourceConfig names the change stream to read.
type DocumentDBEventSourceConfig struct {
	DatabaseName   *string `json:"DatabaseName,omitempty"`
	CollectionName *string `json:"CollectionName,omitempty"`
	FullDocument   *string `json:"FullDocument,omitempty"`
}

// MetricsConfig is {"Metrics":["EventCount"|"ErrorCount"|"KafkaMetrics"]}.
type MetricsConfig struct {
	Metrics []string `json:"Metrics"`
}

// LoggingConfig is {"SystemLogLevel":"DEBUG"|"INFO"|"WARN"}.
type LoggingConfig struct {
	SystemLogLevel *string `json:"SystemLogLevel,omitempty"`
}

// ProvisionedPollerConfig sets provisioned-mode poller counts.
type ProvisionedPollerConfig struct {
	MinimumPollers  *int64  `json:"MinimumPollers,omitempty"`
	MaximumPollers  *int64  `json:"MaximumPollers,omitempty"`
	PollerGroupName *string `json:"PollerGroupName,omitempty"`
}

// State is a mapping's lifecycle state as the API reports it.
type State string

// The states of spec section 6.
const (
	StateCreating  State = "Creating"
	StateEnabling  State = "Enabling"
	StateEnabled   State = "Enabled"
	StateDisabling State = "Disabling"
	StateDisabled  State = "Disabled"
	StateUpdating  State = "Updating"
	StateDeleting  State = "Deleting"
)

// Transitional reports whether s is a state the engine moves out of by
// itself; Update and Delete are refused while a mapping is in one.
func (s State) Transitional() bool {
	switch s {
	case StateCreating, StateEnabling, StateDisabling, StateUpdating, StateDeleting:
		return true
	}
	return false
}

// Mapping is one event source mapping as the engine keeps and persists it.
type Mapping struct {
	UUID                  string            `json:"UUID"`
	Arn                   string            `json:"EventSourceMappingArn"`
	FunctionArn           string            `json:"FunctionArn"`
	Source                Source            `json:"Source"`
	Config                Config            `json:"Config"` // effective configuration, defaults applied
	State                 State             `json:"State"`
	StateTransitionReason string            `json:"StateTransitionReason"`
	LastProcessingResult  string            `json:"LastProcessingResult,omitempty"`
	LastModified          time.Time         `json:"LastModified"`
	Created               time.Time         `json:"Created"`
	Tags                  map[string]string `json:"Tags,omitempty"`
}

// Enabled reports whether the mapping is meant to run.
func (m *Mapping) Enabled() bool { return m.Config.Enabled == nil || *m.Config.Enabled }

// Clone returns a deep copy, so callers never share mutable state with the engine.
func (m *Mapping) Clone() *Mapping {
	c := *m
	c.Config = m.Config.clone()
	if m.Tags != nil {
		c.Tags = make(map[string]string, len(m.Tags))
		for k, v := range m.Tags {
			c.Tags[k] = v
		}
	}
	return &c
}

func ptr[T any](v T) *T { return &v }

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

func cloneSlice[T any](s []T) []T {
	if s == nil {
		return nil
	}
	return append(make([]T, 0, len(s)), s...)
}

func (c Config) clone() Config {
	out := c
	out.FunctionName = clonePtr(c.FunctionName)
	out.EventSourceArn = clonePtr(c.EventSourceArn)
	out.Enabled = clonePtr(c.Enabled)
	out.BatchSize = clonePtr(c.BatchSize)
	if c.FilterCriteria != nil {
		fc := FilterCriteria{Filters: make([]Filter, len(c.FilterCriteria.Filters))}
		for i, f := range c.FilterCriteria.Filters {
			fc.Filters[i] = Filter{Pattern: clonePtr(f.Pattern)}
		}
		out.FilterCriteria = &fc
	}
	out.MaximumBatchingWindowInSeconds = clonePtr(c.MaximumBatchingWindowInSeconds)
	out.ParallelizationFactor = clonePtr(c.ParallelizationFactor)
	out.StartingPosition = clonePtr(c.StartingPosition)
	out.StartingPositionTimestamp = clonePtr(c.StartingPositionTimestamp)
	if c.DestinationConfig != nil {
		d := DestinationConfig{}
		if c.DestinationConfig.OnSuccess != nil {
			d.OnSuccess = &Destination{Destination: clonePtr(c.DestinationConfig.OnSuccess.Destination)}
		}
		if c.DestinationConfig.OnFailure != nil {
			d.OnFailure = &Destination{Destination: clonePtr(c.DestinationConfig.OnFailure.Destination)}
		}
		out.DestinationConfig = &d
	}
	out.MaximumRecordAgeInSeconds = clonePtr(c.MaximumRecordAgeInSeconds)
	out.BisectBatchOnFunctionError = clonePtr(c.BisectBatchOnFunctionError)
	out.MaximumRetryAttempts = clonePtr(c.MaximumRetryAttempts)
	out.TumblingWindowInSeconds = clonePtr(c.TumblingWindowInSeconds)
	out.Topics = cloneSlice(c.Topics)
	out.Queues = cloneSlice(c.Queues)
	out.SourceAccessConfigurations = cloneSACs(c.SourceAccessConfigurations)
	if c.SelfManagedEventSource != nil {
		s := SelfManagedEventSource{}
		if c.SelfManagedEventSource.Endpoints != nil {
			s.Endpoints = make(map[string][]string, len(c.SelfManagedEventSource.Endpoints))
			for k, v := range c.SelfManagedEventSource.Endpoints {
				s.Endpoints[k] = cloneSlice(v)
			}
		}
		out.SelfManagedEventSource = &s
	}
	out.FunctionResponseTypes = cloneSlice(c.FunctionResponseTypes)
	out.AmazonManagedKafkaEventSourceConfig = c.AmazonManagedKafkaEventSourceConfig.clone()
	out.SelfManagedKafkaEventSourceConfig = c.SelfManagedKafkaEventSourceConfig.clone()
	if c.ScalingConfig != nil {
		out.ScalingConfig = &ScalingConfig{MaximumConcurrency: clonePtr(c.ScalingConfig.MaximumConcurrency)}
	}
	if c.DocumentDBEventSourceConfig != nil {
		d := *c.DocumentDBEventSourceConfig
		d.DatabaseName = clonePtr(d.DatabaseName)
		d.CollectionName = clonePtr(d.CollectionName)
		d.FullDocument = clonePtr(d.FullDocument)
		out.DocumentDBEventSourceConfig = &d
	}
	out.KMSKeyArn = clonePtr(c.KMSKeyArn)
	if c.MetricsConfig != nil {
		out.MetricsConfig = &MetricsConfig{Metrics: cloneSlice(c.MetricsConfig.Metrics)}
	}
	if c.LoggingConfig != nil {
		out.LoggingConfig = &LoggingConfig{SystemLogLevel: clonePtr(c.LoggingConfig.SystemLogLevel)}
	}
	if c.ProvisionedPollerConfig != nil {
		p := *c.ProvisionedPollerConfig
		p.MinimumPollers = clonePtr(p.MinimumPollers)
		p.MaximumPollers = clonePtr(p.MaximumPollers)
		p.PollerGroupName = clonePtr(p.PollerGroupName)
		out.ProvisionedPollerConfig = &p
	}
	out.Tags = nil // tags live on the Mapping, never in the effective config
	return out
}

func cloneSACs(in []SourceAccessConfiguration) []SourceAccessConfiguration {
	if in == nil {
		return nil
	}
	out := make([]SourceAccessConfiguration, len(in))
	for i, s := range in {
		out[i] = SourceAccessConfiguration{Type: clonePtr(s.Type), URI: clonePtr(s.URI)}
	}
	return out
}

func (k *KafkaEventSourceConfig) clone() *KafkaEventSourceConfig {
	if k == nil {
		return nil
	}
	out := &KafkaEventSourceConfig{ConsumerGroupId: clonePtr(k.ConsumerGroupId)}
	if r := k.SchemaRegistryConfig; r != nil {
		sr := &SchemaRegistryConfig{
			SchemaRegistryURI: clonePtr(r.SchemaRegistryURI),
			EventRecordFormat: clonePtr(r.EventRecordFormat),
			AccessConfigs:     cloneSACs(r.AccessConfigs),
		}
		for _, v := range r.SchemaValidationConfigs {
			sr.SchemaValidationConfigs = append(sr.SchemaValidationConfigs, SchemaValidationConfig{Attribute: clonePtr(v.Attribute)})
		}
		out.SchemaRegistryConfig = sr
	}
	return out
}
