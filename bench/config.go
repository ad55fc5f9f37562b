package bench

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Sources are the sources bench can drive, in the order usage lists them.
var Sources = []string{"kafka", "sqs", "kinesis", "dynamodb", "rabbitmq", "activemq", "documentdb"}

// Config is one benchmark: the mapping's settings (the flags mirror
// CreateEventSourceMapping), the records, and what to compare and write.
type Config struct {
	// Source is the event source (Sources); "kafka" without
	// KafkaBootstrap runs an in-process broker.
	Source string
	// Records is how many records each round produces; RecordSize is the
	// size of each record's body in bytes.
	Records, RecordSize int
	// Rate is records produced per second; 0 produces every record before
	// the mapping starts (a backlog: throughput, not latency).
	Rate int
	// BatchSize and Window (MaximumBatchingWindowInSeconds, whole seconds;
	// negative: the source's default) are the mapping's batching.
	BatchSize int
	Window    time.Duration
	// ParallelizationFactor is the mapping's (Kinesis, DynamoDB Streams;
	// 0: default).
	ParallelizationFactor int
	// Partitions is the number of Kafka partitions, or of Kinesis or
	// DynamoDB Streams shards.
	Partitions int
	// Filter is a FilterCriteria pattern; with MatchShare < 1 and no
	// Filter, the source's pattern on the "kind" field is used. MatchShare
	// is the share of records whose "kind" is "match".
	Filter     string
	MatchShare float64
	// FunctionDelay is how long the built-in function takes per
	// invocation.
	FunctionDelay time.Duration
	// LambdaEndpoint, when set, is a real Lambda Invoke API the bench
	// endpoint forwards every invocation to (and counts on the way);
	// InvokeMode is esmd's --invoke-mode (aws, rie).
	LambdaEndpoint, InvokeMode string
	// Compare is "" or "raw": also run the plain client loop, in rounds
	// that alternate with esmd's.
	Compare string
	// Rounds is how many rounds of each kind run.
	Rounds int
	// Timeout ends a round when no new record arrived for this long.
	Timeout time.Duration
	// Exe is the esmd binary the rounds run as children; ServeArgs are
	// flags passed on to `esmd run` (--mq-broker, --secrets-file, ...).
	Exe       string
	ServeArgs []string
	// KafkaBootstrap are the brokers of an existing Kafka cluster.
	KafkaBootstrap []string
	// MQBroker is the AMQP (RabbitMQ) or STOMP (ActiveMQ) URL of the
	// broker, with user and password; DocDBURI is the mongodb:// URI.
	MQBroker, DocDBURI string
	// Lanes, when set, runs scale mode instead: that many idle or
	// trickling lanes (see scale.go); Trickle is records per second
	// spread over them.
	Lanes   int
	Trickle int
	// Idle is how long scale mode measures an idle process.
	Idle time.Duration
	// ProfileDir, when set, gets a CPU profile of each round's child
	// (ESMD_CPUPROFILE, which esmd's main honours) and a heap profile taken
	// at its peak heap (ESMD_MEMPROFILE, <kind>-round<N>.heap.pprof).
	ProfileDir string
}

// Defaults fills the zero fields with the defaults of `esmd bench`.
func (c *Config) Defaults() {
	if c.Source == "" {
		c.Source = "kafka"
	}
	if c.Records == 0 {
		c.Records = 100000
	}
	if c.RecordSize == 0 {
		c.RecordSize = 1024
	}
	if c.BatchSize == 0 {
		c.BatchSize = 100
	}
	if c.Partitions == 0 {
		c.Partitions = defaultPartitions(c.Source)
	}
	if c.MatchShare == 0 {
		c.MatchShare = 1
	}
	if c.InvokeMode == "" {
		c.InvokeMode = "aws"
	}
	if c.Rounds == 0 {
		c.Rounds = 1
		if c.Compare != "" {
			c.Rounds = 3
		}
	}
	if c.Timeout == 0 {
		c.Timeout = 30 * time.Second
	}
	if c.Idle == 0 {
		c.Idle = 10 * time.Second
	}
}

func defaultPartitions(src string) int {
	switch src {
	case "kafka":
		return 8
	case "kinesis", "dynamodb":
		return 4
	}
	return 1
}

// Validate reports the first setting that is out of range.
func (c *Config) Validate() error {
	switch {
	case !slices.Contains(Sources, c.Source):
		return fmt.Errorf("--source must be one of %v, not %q", Sources, c.Source)
	case c.Records < 1 || c.Records > 100_000_000:
		return errors.New("--records must be between 1 and 100000000")
	case c.RecordSize < 64 || c.RecordSize > 1<<20:
		return errors.New("--record-size must be between 64 and 1048576 bytes")
	case c.Rate < 0:
		return errors.New("--rate must not be negative")
	case c.BatchSize < 1 || c.BatchSize > 10000:
		return errors.New("--batch-size must be between 1 and 10000")
	case c.Window > 300*time.Second || c.Window >= 0 && c.Window%time.Second != 0:
		return errors.New("--window must be whole seconds between 0s and 300s (MaximumBatchingWindowInSeconds)")
	case c.ParallelizationFactor < 0 || c.ParallelizationFactor > 10:
		return errors.New("--parallelization-factor must be between 1 and 10")
	case c.Partitions < 1 || c.Partitions > 1000 && c.Lanes == 0:
		return errors.New("--partitions must be between 1 and 1000")
	case c.MatchShare <= 0 || c.MatchShare > 1:
		return errors.New("--match-share must be in (0, 1]")
	case c.Compare != "" && c.Compare != "raw":
		return fmt.Errorf("--compare must be raw, not %q", c.Compare)
	case c.InvokeMode != "aws" && c.InvokeMode != "rie":
		return fmt.Errorf("--invoke-mode must be aws or rie, not %q", c.InvokeMode)
	case c.Rounds < 1 || c.Rounds > 100:
		return errors.New("--rounds must be between 1 and 100")
	case c.Lanes < 0 || c.Lanes > 100_000:
		return errors.New("--lanes must be between 0 and 100000")
	case c.Trickle < 0:
		return errors.New("--trickle must not be negative")
	case c.Exe == "":
		return errors.New("bench: no esmd binary to run")
	}
	return nil
}

// matches reports whether record id is one of the share that pass the
// filter: a fixed, evenly spread choice, so the producer and the counter
// agree without sharing state.
func matches(id uint64, share float64) bool {
	if share >= 1 {
		return true
	}
	return float64(id*2654435761%1_000_003)/1_000_003 < share
}

// wanted counts the records of [0, n) that match.
func wanted(n uint64, share float64) int64 {
	if share >= 1 {
		return int64(n)
	}
	var w int64
	for id := range n {
		if matches(id, share) {
			w++
		}
	}
	return w
}
