// Package dynamodbstreams is the poller of DynamoDB Streams mappings. The
// shard machinery (discovery and re-listing, lineage: a child shard starts
// only once its parent is read to its end and every one of its records is
// done, iterators, backoff, checkpoints through source.Tracker, Lag) is
// package stream's; this package is its DynamoDB Streams client
// (DescribeStream, GetShardIterator, GetRecords, error classes) and the
// DynamoDB record encoding.
//
// Lane is the shard id; Key the item's key (its Keys in typed JSON, names
// sorted), so that ParallelizationFactor keeps each item's changes in
// order; ID and Seq the record's SequenceNumber (the itemIdentifier of a
// partial batch response); Arrival its ApproximateCreationDateTime (whole
// seconds, as DynamoDB gives it). The event record is payload.AppendDynamoDB's,
// byte for byte as AWS delivers it: an Encoder that writes it on demand from
// the GetRecords response's own bytes (raw.go), or, for a response that
// route refuses or a client other than the SDK's, Data encoded from the
// SDK's types.
//
// DynamoDB Streams has no AT_TIMESTAMP starting position (esm validation
// refuses such a mapping with AWS's message before a poller starts) and no
// MillisBehindLatest: Lag is the age of the last record read.
package dynamodbstreams

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ddbs "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"

	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/payload"
	"github.com/esmd/esmd/pollers/stream"
	"github.com/esmd/esmd/source"
)

// API is the part of the DynamoDB Streams client the poller uses.
type API interface {
	DescribeStream(ctx context.Context, in *ddbs.DescribeStreamInput, o ...func(*ddbs.Options)) (*ddbs.DescribeStreamOutput, error)
	GetShardIterator(ctx context.Context, in *ddbs.GetShardIteratorInput, o ...func(*ddbs.Options)) (*ddbs.GetShardIteratorOutput, error)
	GetRecords(ctx context.Context, in *ddbs.GetRecordsInput, o ...func(*ddbs.Options)) (*ddbs.GetRecordsOutput, error)
}

// Config is what the poller reads and from where: stream.Common, with
// the DynamoDB Streams defaults. Common.StreamARN is
// arn:aws:dynamodb:<region>:<account>:table/<table>/stream/<label>;
// Common.StartingPosition is TRIM_HORIZON (default) or LATEST; Limit
// defaults to 1000, the maximum (a larger one is lowered to it); EmptyWait
// is 100 ms doubling up to a MaxWait of 250 ms by default (AWS polls each
// DynamoDB shard four times a second).
type Config struct {
	stream.Common
}

// ParseARN checks a stream ARN
// (arn:aws:dynamodb:<region>:<account>:table/<table>/stream/<label>) and
// returns its table and region. The ARN is split by esm.ParseARN, as the
// engine splits it.
func ParseARN(arn string) (table, region string, err error) {
	a, ok := esm.ParseARN(arn)
	if !ok || a.Service != "dynamodb" || !strings.HasPrefix(a.Resource, "table/") {
		return "", "", fmt.Errorf("dynamodbstreams: not a stream ARN: %q", arn)
	}
	table, label, ok := strings.Cut(strings.TrimPrefix(a.Resource, "table/"), "/stream/")
	if !ok || table == "" || label == "" {
		return "", "", fmt.Errorf("dynamodbstreams: not a stream ARN: %q", arn)
	}
	return table, a.Region, nil
}

// Poller reads one mapping's stream. It implements source.Poller and
// Lag (IteratorAge by shard: the age of the last record read).
type Poller struct {
	*stream.Poller
}

// New starts a poller on api. Shards are listed once before New returns,
// so a missing stream is an error here (IsStreamNotFound).
func New(ctx context.Context, api API, c Config) (*Poller, error) {
	if c.Positions == nil {
		return nil, errors.New("dynamodbstreams: Config.Positions is required")
	}
	_, region, err := ParseARN(c.StreamARN)
	if err != nil {
		return nil, err
	}
	if c.Limit <= 0 || c.Limit > 1000 {
		c.Limit = 1000
	}
	if c.EmptyWait <= 0 {
		c.EmptyWait = 100 * time.Millisecond
	}
	if c.MaxWait <= 0 {
		c.MaxWait = 250 * time.Millisecond
	}
	cl := &client{api: api, arn: c.StreamARN, region: region}
	sp, err := stream.New(ctx, cl, stream.Config{Common: c.Common})
	if err != nil {
		return nil, err
	}
	return &Poller{Poller: sp}, nil
}

// Open starts a poller with a client made from cfg (endpoint from the SDK
// configuration: AWS_ENDPOINT_URL_DYNAMODB_STREAMS, AWS_ENDPOINT_URL), in
// the stream ARN's region.
func Open(ctx context.Context, cfg aws.Config, c Config) (*Poller, error) {
	return New(ctx, NewClient(cfg, c.StreamARN), c)
}

// NewClient returns a DynamoDB Streams client from cfg in the region of
// streamARN, with plainBody around its HTTP client.
func NewClient(cfg aws.Config, streamARN string, optFns ...func(*ddbs.Options)) *ddbs.Client {
	if _, region, err := ParseARN(streamARN); err == nil && region != "" {
		cfg = cfg.Copy()
		cfg.Region = region
	}
	optFns = append([]func(*ddbs.Options){func(o *ddbs.Options) { o.HTTPClient = plainBody{o.HTTPClient} }}, optFns...)
	return ddbs.NewFromConfig(cfg, optFns...)
}

// plainBody hides the request body's io.WriterTo from net/http. smithy-go
// wraps a request body in a reader whose WriteTo answers io.EOF once the
// SDK closed it, which it does as soon as the response headers are in;
// net/http's writer, still checking that the body has no bytes past its
// ContentLength (io.Copy, which returns WriteTo's io.EOF as an error),
// then takes it for a failed body read and closes the connection under
// the response being read: "deserialization failed ... use of closed
// network connection". Only a server that answers before the writer is
// done (a local emulator) shows it, on about one GetRecords of 1,000 records
// in ten (internal/ddbstreams); a plain io.ReadCloser is read with Read,
// where a closed body is a clean io.EOF.
type plainBody struct{ ddbs.HTTPClient }

func (c plainBody) Do(r *http.Request) (*http.Response, error) {
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = struct{ io.ReadCloser }{r.Body}
	}
	return c.HTTPClient.Do(r)
}

// client is the stream.Client of one DynamoDB stream.
type client struct {
	api    API
	arn    string
	region string
}

func (c *client) Shards(ctx context.Context) ([]stream.Shard, error) {
	var out []stream.Shard
	in := &ddbs.DescribeStreamInput{StreamArn: aws.String(c.arn)}
	for {
		res, err := c.api.DescribeStream(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("dynamodbstreams: DescribeStream %s: %w", c.arn, err)
		}
		d := res.StreamDescription
		if d == nil {
			return out, nil
		}
		for _, s := range d.Shards {
			sh := stream.Shard{ID: aws.ToString(s.ShardId)}
			sh.Closed = s.SequenceNumberRange != nil && s.SequenceNumberRange.EndingSequenceNumber != nil
			if p := aws.ToString(s.ParentShardId); p != "" {
				sh.Parents = []string{p}
			}
			out = append(out, sh)
		}
		if aws.ToString(d.LastEvaluatedShardId) == "" {
			return out, nil
		}
		in = &ddbs.DescribeStreamInput{StreamArn: aws.String(c.arn), ExclusiveStartShardId: d.LastEvaluatedShardId}
	}
}

func (c *client) Iterator(ctx context.Context, shard string, pos stream.Position) (string, error) {
	in := &ddbs.GetShardIteratorInput{StreamArn: aws.String(c.arn), ShardId: aws.String(shard),
		ShardIteratorType: types.ShardIteratorType(pos.Type)}
	switch pos.Type {
	case stream.AfterSequenceNumber:
		in.SequenceNumber = aws.String(pos.Seq)
	case stream.AtTimestamp:
		if !pos.Timestamp.IsZero() {
			return c.iteratorAt(ctx, shard, pos.Timestamp)
		}
		// Refused at create time; a mapping stored before that rule reads
		// from the oldest record rather than not at all.
		in.ShardIteratorType = types.ShardIteratorTypeTrimHorizon
	}
	res, err := c.api.GetShardIterator(ctx, in)
	if err != nil {
		return "", fmt.Errorf("dynamodbstreams: GetShardIterator %s: %w", shard, err)
	}
	return aws.ToString(res.ShardIterator), nil
}

// maxScanPages bounds the GetRecords calls iteratorAt makes on one shard
// (a shard holds 24 hours of records).
const maxScanPages = 10000

// iteratorAt emulates an AT_TIMESTAMP iterator, which DynamoDB Streams does
// not have (esmd replay): it reads the shard from its oldest record and
// returns an iterator at the first record whose ApproximateCreationDateTime
// is at or after ts. That time is in whole seconds, so records of ts's
// second count as at or after it. When no record is, the iterator is after
// the last record read (or at TRIM_HORIZON for an empty shard).
func (c *client) iteratorAt(ctx context.Context, shard string, ts time.Time) (string, error) {
	at := func(typ types.ShardIteratorType, seq string) (string, error) {
		in := &ddbs.GetShardIteratorInput{StreamArn: aws.String(c.arn), ShardId: aws.String(shard), ShardIteratorType: typ}
		if seq != "" {
			in.SequenceNumber = aws.String(seq)
		}
		res, err := c.api.GetShardIterator(ctx, in)
		if err != nil {
			return "", fmt.Errorf("dynamodbstreams: GetShardIterator %s: %w", shard, err)
		}
		return aws.ToString(res.ShardIterator), nil
	}
	from := ts.Truncate(time.Second)
	iter, err := at(types.ShardIteratorTypeTrimHorizon, "")
	if err != nil {
		return "", err
	}
	last := ""
	for range maxScanPages {
		res, err := c.getRecords(ctx, &ddbs.GetRecordsInput{ShardIterator: aws.String(iter), Limit: aws.Int32(1000)})
		if err != nil {
			return "", fmt.Errorf("dynamodbstreams: GetRecords %s: %w", shard, err)
		}
		for _, r := range res.Records {
			if r.Dynamodb == nil || r.Dynamodb.SequenceNumber == nil {
				continue
			}
			if t := r.Dynamodb.ApproximateCreationDateTime; t != nil && !t.Before(from) {
				return at(types.ShardIteratorTypeAtSequenceNumber, *r.Dynamodb.SequenceNumber)
			}
			last = *r.Dynamodb.SequenceNumber
		}
		next := aws.ToString(res.NextShardIterator)
		if next == "" || len(res.Records) == 0 {
			break // the shard's end, or its tip
		}
		iter = next
	}
	if last == "" {
		return at(types.ShardIteratorTypeTrimHorizon, "")
	}
	return at(types.ShardIteratorTypeAfterSequenceNumber, last)
}

// Rewind replaces the checkpoints of a mapping's shards so that its next
// poller reads from `to` (esmd replay, stream.Rewind). DynamoDB Streams
// has no AT_TIMESTAMP iterator: a shard rewound to a timestamp is read
// from its oldest record to the first at or after it (iteratorAt) when
// the poller starts.
func Rewind(ctx context.Context, env *source.Env, m *esm.Mapping, to esm.Position) error {
	c, err := ConfigFor(env, m)
	if err != nil {
		return err
	}
	cl := &client{api: NewClient(env.AWS, c.StreamARN), arn: c.StreamARN}
	return stream.Rewind(ctx, cl, env.Store, m.UUID, to)
}

func (c *client) Read(ctx context.Context, shard, iter string, limit int) (stream.Page, error) {
	res, err := c.getRecords(ctx, &ddbs.GetRecordsInput{ShardIterator: aws.String(iter), Limit: aws.Int32(int32(limit))}, withRawPage)
	if err != nil {
		return stream.Page{}, fmt.Errorf("dynamodbstreams: GetRecords %s: %w", shard, err)
	}
	if raw, ok := res.ResultMetadata.Get(rawPageKey{}).(*rawPage); ok {
		return c.rawRecords(raw), nil
	}
	return c.sdkRecords(res), nil
}

// sdkRecords gives the records of a page the SDK decoded.
func (c *client) sdkRecords(res *ddbs.GetRecordsOutput) stream.Page {
	page := stream.Page{Next: aws.ToString(res.NextShardIterator)}
	if len(res.Records) > 0 {
		page.Records = make([]source.Record, 0, len(res.Records))
		for i := range res.Records {
			if res.Records[i].Dynamodb == nil {
				continue // not a record: nothing to deliver or checkpoint
			}
			page.Records = append(page.Records, c.record(&res.Records[i]))
		}
	}
	return page
}

// getRecords calls GetRecords and turns a panic of the SDK's decoder into
// an error: it panics on some damaged responses
// ("ApproximateCreationDateTime":"NaN" reaches big.NewFloat), and a
// damaged response must not stop the process.
func (c *client) getRecords(ctx context.Context, in *ddbs.GetRecordsInput, o ...func(*ddbs.Options)) (res *ddbs.GetRecordsOutput, err error) {
	defer func() {
		if p := recover(); p != nil {
			res, err = nil, fmt.Errorf("%w: %v", errDecode, p)
		}
	}()
	return c.api.GetRecords(ctx, in, o...)
}

// errDecode is the error of a GetRecords response the SDK panicked on.
var errDecode = errors.New("the SDK could not decode the GetRecords response")

func (c *client) Classify(err error) stream.ErrorKind {
	var (
		nf *types.ResourceNotFoundException
		le *types.LimitExceededException
		ei *types.ExpiredIteratorException
		td *types.TrimmedDataAccessException
	)
	switch {
	case errors.As(err, &nf):
		return stream.NotFound
	case errors.As(err, &le):
		return stream.Throttled
	case errors.As(err, &ei):
		return stream.Expired
	case errors.As(err, &td):
		return stream.Trimmed
	}
	return stream.Other
}

// record encodes one stream record as the element of the event's Records.
func (c *client) record(r *types.Record) source.Record {
	d := r.Dynamodb
	keys := AppendAttributeMap(nil, d.Keys)
	dr := payload.DynamoDBRecord{
		EventID:        aws.ToString(r.EventID),
		EventName:      string(r.EventName),
		EventVersion:   aws.ToString(r.EventVersion),
		AWSRegion:      aws.ToString(r.AwsRegion),
		Keys:           keys,
		SequenceNumber: aws.ToString(d.SequenceNumber),
		SizeBytes:      aws.ToInt64(d.SizeBytes),
		StreamViewType: string(d.StreamViewType),
		EventSourceARN: c.arn,
	}
	if dr.AWSRegion == "" {
		dr.AWSRegion = c.region
	}
	if d.ApproximateCreationDateTime != nil {
		// DynamoDB gives whole seconds; keep them whole whatever a server
		// sends, as the event shows an integral number.
		dr.ApproximateCreationDateTime = d.ApproximateCreationDateTime.Truncate(time.Second)
	}
	if d.NewImage != nil {
		dr.NewImage = AppendAttributeMap(nil, d.NewImage)
	}
	if d.OldImage != nil {
		dr.OldImage = AppendAttributeMap(nil, d.OldImage)
	}
	if u := r.UserIdentity; u != nil {
		dr.UserIdentity = identity(aws.ToString(u.Type), aws.ToString(u.PrincipalId))
	}
	return source.Record{
		Key:     string(keys),
		ID:      dr.SequenceNumber,
		Seq:     dr.SequenceNumber,
		Arrival: dr.ApproximateCreationDateTime,
		Data:    payload.AppendDynamoDB(nil, &dr),
	}
}

// rawRecords gives the records of a page the raw route decoded: each
// encodes itself into its event from the page's bytes.
func (c *client) rawRecords(p *rawPage) stream.Page {
	page := stream.Page{Next: p.next}
	if len(p.recs) == 0 {
		return page
	}
	page.Records = make([]source.Record, len(p.recs))
	encs := make([]rawEncoder, len(p.recs))
	// The Keys of all records, in one allocation (each is the length of its
	// span, or {}).
	n := 0
	for i := range p.recs {
		n += max(imageLen(&p.recs[i].keys), 2)
	}
	slab := make([]byte, 0, n)
	for i := range p.recs {
		r := &p.recs[i]
		e := &encs[i]
		e.page, e.rec = p, r
		from := len(slab)
		if r.keys.ok {
			slab = p.appendImage(slab, &r.keys)
		} else {
			slab = append(slab, '{', '}')
		}
		keys := slab[from:len(slab):len(slab)]
		key := string(keys)
		e.dr = payload.DynamoDBRecord{
			EventID:        string(p.str(r.eventID)),
			EventName:      intern(p.str(r.eventName)),
			EventVersion:   intern(p.str(r.eventVersion)),
			AWSRegion:      intern(p.str(r.region)),
			Keys:           keys,
			SequenceNumber: string(p.str(r.seq)),
			SizeBytes:      r.sizeBytes,
			StreamViewType: intern(p.str(r.viewType)),
			EventSourceARN: c.arn,
			Images:         e,
		}
		if e.dr.AWSRegion == "" {
			e.dr.AWSRegion = c.region
		}
		if r.hasCreated {
			e.dr.ApproximateCreationDateTime = r.created.Truncate(time.Second)
		}
		if r.hasIdentity {
			e.dr.UserIdentity = identity(p.str(r.idType), p.str(r.principal))
		}
		page.Records[i] = source.Record{
			Key:     key,
			ID:      e.dr.SequenceNumber,
			Seq:     e.dr.SequenceNumber,
			Arrival: e.dr.ApproximateCreationDateTime,
			Encoder: e,
			Size:    payload.DynamoDBSize(&e.dr, imageLen(&r.newImage), imageLen(&r.oldImage)),
		}
	}
	return page
}

// identity encodes a record's userIdentity.
func identity[S string | []byte](typ, principal S) json.RawMessage {
	b := append([]byte(nil), `{"type":`...)
	b = payload.AppendString(b, typ)
	b = append(b, `,"principalId":`...)
	b = payload.AppendString(b, principal)
	return append(b, '}')
}

// AppendAttributeMap appends an attribute map in DynamoDB's typed JSON
// ({"Id":{"N":"101"}}), the form Lambda delivers Keys, NewImage and
// OldImage in: numbers as strings, binaries in base64. Attribute names
// are sorted, so that one item's Keys always encode alike (AWS's own
// order is not documented).
func AppendAttributeMap(dst []byte, m map[string]types.AttributeValue) []byte {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	dst = append(dst, '{')
	for i, k := range names {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = payload.AppendString(dst, k)
		dst = append(dst, ':')
		dst = AppendAttributeValue(dst, m[k])
	}
	return append(dst, '}')
}

// AppendAttributeValue appends one typed attribute value ({"S":"x"}).
func AppendAttributeValue(dst []byte, v types.AttributeValue) []byte {
	switch v := v.(type) {
	case *types.AttributeValueMemberS:
		dst = append(dst, `{"S":`...)
		dst = payload.AppendString(dst, v.Value)
	case *types.AttributeValueMemberN:
		dst = append(dst, `{"N":`...)
		dst = payload.AppendString(dst, v.Value)
	case *types.AttributeValueMemberB:
		dst = append(dst, `{"B":`...)
		dst = payload.AppendBase64(dst, v.Value)
	case *types.AttributeValueMemberBOOL:
		dst = append(dst, `{"BOOL":`...)
		dst = appendBool(dst, v.Value)
	case *types.AttributeValueMemberNULL:
		dst = append(dst, `{"NULL":`...)
		dst = appendBool(dst, v.Value)
	case *types.AttributeValueMemberSS:
		dst = append(dst, `{"SS":`...)
		dst = appendStrings(dst, v.Value)
	case *types.AttributeValueMemberNS:
		dst = append(dst, `{"NS":`...)
		dst = appendStrings(dst, v.Value)
	case *types.AttributeValueMemberBS:
		dst = append(dst, `{"BS":[`...)
		for i, b := range v.Value {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = payload.AppendBase64(dst, b)
		}
		dst = append(dst, ']')
	case *types.AttributeValueMemberL:
		dst = append(dst, `{"L":[`...)
		for i, e := range v.Value {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendAttributeValue(dst, e)
		}
		dst = append(dst, ']')
	case *types.AttributeValueMemberM:
		dst = append(dst, `{"M":`...)
		dst = AppendAttributeMap(dst, v.Value)
	default:
		// An attribute type newer than this SDK (UnknownUnionMember):
		// deliver it as a NULL rather than as invalid JSON.
		return append(dst, `{"NULL":true}`...)
	}
	return append(dst, '}')
}

func appendBool(dst []byte, b bool) []byte {
	if b {
		return append(dst, "true"...)
	}
	return append(dst, "false"...)
}

func appendStrings(dst []byte, ss []string) []byte {
	dst = append(dst, '[')
	for i, s := range ss {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = payload.AppendString(dst, s)
	}
	return append(dst, ']')
}

// IsStreamNotFound reports whether err says the stream does not exist.
func IsStreamNotFound(err error) bool {
	var nf *types.ResourceNotFoundException
	return errors.As(err, &nf)
}
