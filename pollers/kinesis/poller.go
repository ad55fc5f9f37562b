// Package kinesis is the poller of Kinesis Data Streams mappings: it lists
// the stream's shards (and lists them again to find the children of splits
// and merges), reads every shard with GetShardIterator/GetRecords on the
// shared throughput, starts a child shard only once its parents are read
// to their end and every one of their records is done, and checkpoints
// each shard in a position store, never past a record that is not done.
// The shard machinery is package stream's; this package is its Kinesis
// client (ListShards, GetShardIterator, GetRecords, error classes) and the
// Kinesis record encoding.
//
// Lane is the shard id, Key the partition key, ID and Seq the sequence
// number; Data is the event record payload.AppendKinesis encodes.
package kinesis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskinesis "github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/payload"
	"github.com/esmd/esmd/pollers/stream"
	"github.com/esmd/esmd/source"
)

// ShardEnd is the position stored for a shard that was read to its end and
// whose every record is done: its children may start.
const ShardEnd = stream.ShardEnd

// API is the part of the Kinesis client the poller uses.
type API interface {
	ListShards(ctx context.Context, in *awskinesis.ListShardsInput, o ...func(*awskinesis.Options)) (*awskinesis.ListShardsOutput, error)
	GetShardIterator(ctx context.Context, in *awskinesis.GetShardIteratorInput, o ...func(*awskinesis.Options)) (*awskinesis.GetShardIteratorOutput, error)
	GetRecords(ctx context.Context, in *awskinesis.GetRecordsInput, o ...func(*awskinesis.Options)) (*awskinesis.GetRecordsOutput, error)
}

// Config is what the poller reads and from where: stream.Common, with
// the Kinesis defaults (Limit 10000, EmptyWait 100 ms doubling up to
// MaxWait 1 s: AWS polls each shard once a second; MaxPendingBytes 32 MiB),
// and what only Kinesis has.
//
// Common.StreamARN is a stream, read with GetRecords on the shared
// throughput, or a registered stream consumer, read with SubscribeToShard
// (enhanced fan-out) when the API implements SubscribeAPI.
// Common.StartingPosition may be AT_TIMESTAMP, with Timestamp.
type Config struct {
	stream.Common
	// Timestamp is the AT_TIMESTAMP position.
	Timestamp time.Time
	// InvokeIdentityArn is the event's invokeIdentityArn (the function's
	// execution role); empty when unknown.
	InvokeIdentityArn string
}

// StreamName returns the stream name of a stream or consumer ARN
// (arn:aws:kinesis:region:account:stream/name[/consumer/c:ts]) and the
// ARN's region. The ARN is split by esm.ParseARN, as the engine splits it.
func StreamName(arn string) (name, region string, err error) {
	a, ok := esm.ParseARN(arn)
	if !ok || a.Service != "kinesis" || !strings.HasPrefix(a.Resource, "stream/") {
		return "", "", fmt.Errorf("kinesis: not a stream ARN: %q", arn)
	}
	name = strings.TrimPrefix(a.Resource, "stream/")
	if i := strings.Index(name, "/consumer/"); i >= 0 {
		name = name[:i]
	}
	if name == "" {
		return "", "", fmt.Errorf("kinesis: not a stream ARN: %q", arn)
	}
	return name, a.Region, nil
}

// StreamARN returns the stream ARN of a stream or consumer ARN.
func StreamARN(arn string) string {
	if i := strings.Index(arn, "/consumer/"); i >= 0 {
		return arn[:i]
	}
	return arn
}

// MaxPendingBytes is the Kinesis default of Common.MaxPendingBytes, 32 MiB:
// 2 MiB a shard for 16 shards. A GetRecords returns up to 10 MB and a
// shard allows five a second: reads of a smaller share spend the quota
// (and the CPU of each call) on fewer records.
const MaxPendingBytes = 32 << 20

// Poller reads one mapping's stream. It implements source.Poller and
// Lag (IteratorAge by shard: the age of the last record read).
type Poller struct {
	*stream.Poller
	efo *efo // with a consumer ARN (enhanced fan-out)
}

// Close stops the readers and closes the enhanced fan-out subscriptions.
func (p *Poller) Close() error {
	err := p.Poller.Close()
	if p.efo != nil {
		p.efo.close()
	}
	return err
}

// New starts a poller on api. Shards are listed once before New returns,
// so a missing stream is an error here.
func New(ctx context.Context, api API, c Config) (*Poller, error) {
	if c.Positions == nil {
		return nil, errors.New("kinesis: Config.Positions is required")
	}
	name, region, err := StreamName(c.StreamARN)
	if err != nil {
		return nil, err
	}
	cl := &client{api: api, name: name, region: region, srcARN: StreamARN(c.StreamARN), identity: c.InvokeIdentityArn}
	var (
		scl stream.Client = cl
		ef  *efo
	)
	if sub, ok := api.(SubscribeAPI); ok && strings.Contains(c.StreamARN, "/consumer/") {
		ef = &efo{client: cl, sub: sub, consumer: c.StreamARN, subs: map[string]*subscription{}}
		scl = ef
	}
	if c.MaxPendingBytes <= 0 {
		c.MaxPendingBytes = MaxPendingBytes
	}
	sp, err := stream.New(ctx, scl, stream.Config{Common: c.Common, Name: cl.srcARN, Timestamp: c.Timestamp})
	if err != nil {
		return nil, err
	}
	return &Poller{Poller: sp, efo: ef}, nil
}

// Open starts a poller with a client made from cfg (endpoint from the
// SDK configuration, AWS_ENDPOINT_URL_KINESIS).
func Open(ctx context.Context, cfg aws.Config, c Config) (*Poller, error) {
	if _, region, err := StreamName(c.StreamARN); err == nil && region != "" {
		cfg = cfg.Copy()
		cfg.Region = region
	}
	return New(ctx, awskinesis.NewFromConfig(cfg), c)
}

// Rewind replaces the checkpoints of a mapping's shards so that its next
// poller reads from `to` (esmd replay): per shard, an iterator at
// TRIM_HORIZON, LATEST or AT_TIMESTAMP (stream.Rewind).
func Rewind(ctx context.Context, env *source.Env, m *esm.Mapping, to esm.Position) error {
	c, err := ConfigFor(env, m)
	if err != nil {
		return err
	}
	name, region, err := StreamName(c.StreamARN)
	if err != nil {
		return err
	}
	cfg := env.AWS.Copy()
	if region != "" {
		cfg.Region = region
	}
	cl := &client{api: awskinesis.NewFromConfig(cfg), name: name, region: region, srcARN: StreamARN(c.StreamARN)}
	return stream.Rewind(ctx, cl, env.Store, m.UUID, to)
}

// client is the stream.Client of one Kinesis stream.
type client struct {
	api      API
	name     string
	region   string
	srcARN   string
	identity string

	mu     sync.Mutex
	closed map[string]bool // shards the last listing showed closed
}

func (c *client) Shards(ctx context.Context) ([]stream.Shard, error) {
	var out []stream.Shard
	in := &awskinesis.ListShardsInput{StreamName: aws.String(c.name)}
	for {
		res, err := c.api.ListShards(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("kinesis: ListShards %s: %w", c.name, err)
		}
		for _, s := range res.Shards {
			sh := stream.Shard{ID: aws.ToString(s.ShardId)}
			if r := s.SequenceNumberRange; r != nil && r.EndingSequenceNumber != nil {
				c.mu.Lock()
				if c.closed == nil {
					c.closed = map[string]bool{}
				}
				c.closed[sh.ID] = true
				c.mu.Unlock()
				sh.Closed = true
			}
			for _, par := range []*string{s.ParentShardId, s.AdjacentParentShardId} {
				if par != nil && *par != "" {
					sh.Parents = append(sh.Parents, *par)
				}
			}
			out = append(out, sh)
		}
		if res.NextToken == nil || *res.NextToken == "" {
			return out, nil
		}
		in = &awskinesis.ListShardsInput{NextToken: res.NextToken}
	}
}

func (c *client) Iterator(ctx context.Context, shard string, pos stream.Position) (string, error) {
	in := &awskinesis.GetShardIteratorInput{StreamName: aws.String(c.name), ShardId: aws.String(shard),
		ShardIteratorType: types.ShardIteratorType(pos.Type)}
	switch pos.Type {
	case stream.AfterSequenceNumber:
		in.StartingSequenceNumber = aws.String(pos.Seq)
	case stream.AtTimestamp:
		in.Timestamp = aws.Time(pos.Timestamp)
	}
	res, err := c.api.GetShardIterator(ctx, in)
	if err != nil {
		return "", fmt.Errorf("kinesis: GetShardIterator %s: %w", shard, err)
	}
	return aws.ToString(res.ShardIterator), nil
}

func (c *client) Read(ctx context.Context, shard, iter string, limit int) (stream.Page, error) {
	res, err := c.api.GetRecords(ctx, &awskinesis.GetRecordsInput{ShardIterator: aws.String(iter), Limit: aws.Int32(int32(limit))})
	if err != nil {
		return stream.Page{}, fmt.Errorf("kinesis: GetRecords %s: %w", shard, err)
	}
	page := stream.Page{Next: aws.ToString(res.NextShardIterator)}
	if res.MillisBehindLatest != nil {
		page.Behind, page.BehindKnown = time.Duration(*res.MillisBehindLatest)*time.Millisecond, true
	}
	page.Records = c.records(shard, res.Records)
	return page, nil
}

// records makes the records of one read (nil for none). Each encodes
// itself on demand (source.Record.Encoder), into the event that carries
// it: what a record holds until it is done is its data as the SDK decoded
// it, not also its event element (base64 and the fields, 1.7 KB for 1 KB
// of data), made for each record and thrown away.
func (c *client) records(shard string, in []types.Record) []source.Record {
	if len(in) == 0 {
		return nil
	}
	krs := make([]payload.KinesisRecord, len(in))
	out := make([]source.Record, len(in))
	for i := range in {
		r, kr := &in[i], &krs[i]
		*kr = payload.KinesisRecord{
			ShardID:                     shard,
			PartitionKey:                aws.ToString(r.PartitionKey),
			SequenceNumber:              aws.ToString(r.SequenceNumber),
			Data:                        r.Data,
			ApproximateArrivalTimestamp: aws.ToTime(r.ApproximateArrivalTimestamp),
			InvokeIdentityArn:           c.identity,
			AWSRegion:                   c.region,
			EventSourceARN:              c.srcARN,
		}
		if r.EncryptionType == types.EncryptionTypeKms {
			kr.EncryptionType = "KMS"
		}
		out[i] = source.Record{
			Lane:    shard,
			Key:     kr.PartitionKey,
			ID:      kr.SequenceNumber,
			Seq:     kr.SequenceNumber,
			Arrival: kr.ApproximateArrivalTimestamp,
			Encoder: encoder{kr},
			Size:    payload.KinesisSize(kr),
		}
	}
	return out
}

// encoder encodes a Kinesis record into its event (payload.Encoder); one
// pointer, so it is stored in the interface without an allocation.
type encoder struct{ r *payload.KinesisRecord }

func (e encoder) AppendEncoded(dst []byte) []byte { return payload.AppendKinesis(dst, e.r) }

func (c *client) Classify(err error) stream.ErrorKind {
	var (
		nf *types.ResourceNotFoundException
		pt *types.ProvisionedThroughputExceededException
		le *types.LimitExceededException
		ei *types.ExpiredIteratorException
	)
	switch {
	case errors.As(err, &nf):
		return stream.NotFound
	case errors.As(err, &pt), errors.As(err, &le):
		return stream.Throttled
	case errors.As(err, &ei):
		return stream.Expired
	}
	return stream.Other
}

func isNotFound(err error) bool {
	var nf *types.ResourceNotFoundException
	return errors.As(err, &nf)
}

// IsStreamNotFound reports whether err says the stream does not exist.
func IsStreamNotFound(err error) bool { return isNotFound(err) }
