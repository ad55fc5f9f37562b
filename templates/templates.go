package templates

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxSize is the largest template Parse reads (CloudFormation's own limit
// for a template in S3 is 1 MB; SAM templates are transformed into one).
const MaxSize = 4 << 20

// ErrNotTemplate is returned by Parse for a file that is none of the
// formats it reads (a --cli-input-json mappings file, for example).
var ErrNotTemplate = errors.New("not a SAM, CloudFormation or Serverless Framework template")

// Format is the kind of template a file is.
type Format string

// The formats Parse reads.
const (
	SAM            Format = "SAM"
	CloudFormation Format = "CloudFormation"
	Serverless     Format = "Serverless Framework"
)

// Options are what a template's references resolve to.
type Options struct {
	// Region and Account are AWS::Region and AWS::AccountId, and the region
	// and account of every ARN formed (esmd's --region and --account-id).
	Region, Account string
	// Parameters are the --parameter-overrides values, by parameter name
	// (pseudo parameters such as AWS::StackName too, as SAM allows).
	Parameters map[string]string
	// Imports are the values of Fn::ImportValue, by export name.
	Imports map[string]string
	// Resources are values esmd cannot form itself: "Id" for Ref Id,
	// "Id.Attr" for GetAtt Id.Attr (a DynamoDB table's StreamArn, a
	// resource type esmd does not know, a resource defined elsewhere).
	Resources map[string]string
	// StreamArn, when set, looks up the ARN of the latest stream of a
	// DynamoDB table (GetAtt Table.StreamArn; esmd run asks DynamoDB
	// Streams' ListStreams). Nil: such a reference needs Resources.
	StreamArn func(table string) (string, error)
	// Stage is the Serverless Framework stage (--stage); empty means
	// provider.stage, else "dev".
	Stage string
	// LookupEnv answers ${env:NAME} in serverless.yml (default
	// os.LookupEnv).
	LookupEnv func(string) (string, bool)
}

// stackName is AWS::StackName: "local", as sam local uses, unless
// overridden.
func (o *Options) stackName() string {
	if v, ok := o.Parameters["AWS::StackName"]; ok {
		return v
	}
	return "local"
}

// Template is what a template declares.
type Template struct {
	Format Format
	// Mappings are the event source mappings, in the template's order.
	Mappings []Mapping
	// Ignored names the function events that are not event source mappings
	// (Api, S3, Schedule, ...) and the resources whose Condition is false,
	// as "Function.Events.Name (Type)".
	Ignored []string
}

// Mapping is one event source mapping of a template.
type Mapping struct {
	// Request is the CreateEventSourceMapping request body (the shape of
	// aws lambda create-event-source-mapping --cli-input-json).
	Request json.RawMessage
	// Origin says where in the template the mapping is declared:
	// "template.yaml:14: OrderHandler.Events.Orders (SQS)".
	Origin string
}

// Error is an error at a place in a template.
type Error struct {
	File string
	Line int
	// Resource is the logical id of the resource (or the Serverless
	// function) being read, and Property the path of its property.
	Resource, Property string
	Err                error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Resource != "" {
		b.WriteString(e.Resource)
		if e.Property != "" {
			b.WriteString("." + e.Property)
		}
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Parse reads a SAM, CloudFormation or Serverless Framework template (YAML
// with CloudFormation's short-form tags, or JSON) and returns its event
// source mappings as CreateEventSourceMapping requests. The format is told
// from the file: Resources makes a CloudFormation template (SAM when its
// Transform names AWS::Serverless), service with functions or provider a
// serverless.yml. Anything else is ErrNotTemplate.
//
// Only what the mappings use is evaluated; whatever of that cannot be
// resolved is an *Error naming the resource, the property and the line.
func Parse(file string, src []byte, o Options) (*Template, error) {
	if len(src) > MaxSize {
		return nil, fmt.Errorf("%s: %d bytes is larger than the %d a template may have", file, len(src), MaxSize)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	root := deref(&doc)
	if root == nil || root.Kind != yaml.MappingNode {
		return nil, ErrNotTemplate
	}
	if o.Region == "" {
		o.Region = "us-east-1"
	}
	if o.Account == "" {
		o.Account = "000000000000"
	}
	if o.LookupEnv == nil {
		o.LookupEnv = os.LookupEnv
	}
	switch {
	case field(root, "Resources") != nil:
		return parseCloudFormation(file, root, &o)
	case field(root, "service") != nil && (field(root, "functions") != nil || field(root, "provider") != nil):
		return parseServerless(file, root, &o)
	}
	return nil, ErrNotTemplate
}

// newEvaluator reads the sections of a CloudFormation template (or of a
// serverless.yml's resources) that references resolve against.
func newEvaluator(file string, root *yaml.Node, o *Options) (*evaluator, error) {
	e := &evaluator{file: file, o: o, params: map[string]*yaml.Node{}, conds: map[string]*yaml.Node{},
		condVal: map[string]bool{}, condBusy: map[string]bool{}, resources: map[string]*resource{}}
	for _, p := range pairs(field(root, "Parameters")) {
		e.params[p[0].Value] = p[1]
	}
	for _, p := range pairs(field(root, "Conditions")) {
		e.conds[p[0].Value] = p[1]
	}
	e.mappings = field(root, "Mappings")
	res := deref(field(root, "Resources"))
	if res != nil && res.Kind != yaml.MappingNode {
		return nil, &Error{File: file, Line: res.Line, Resource: "Resources", Err: errors.New("the Resources section must be a map of logical ids to resources")}
	}
	for _, p := range pairs(res) {
		id, n := p[0].Value, deref(p[1])
		if n == nil || n.Kind != yaml.MappingNode {
			return nil, &Error{File: file, Line: p[0].Line, Resource: id, Err: errors.New("a resource must be a map with Type and Properties")}
		}
		t := deref(field(n, "Type"))
		if t == nil || t.Kind != yaml.ScalarNode {
			return nil, &Error{File: file, Line: n.Line, Resource: id, Err: errors.New("the resource has no Type")}
		}
		e.resources[id] = &resource{id: id, typ: t.Value, line: p[0].Line, node: n, props: deref(field(n, "Properties"))}
	}
	for k, v := range o.Parameters {
		if _, ok := e.params[k]; !ok && !strings.HasPrefix(k, "AWS::") {
			return nil, fmt.Errorf("%s: --parameter-overrides %s=%s: the template has no parameter %s", file, k, v, k)
		}
	}
	return e, nil
}

// members are the members of a CreateEventSourceMapping request, and how a
// value given as a string (a parameter's, a variable's) is converted.
var members = map[string]kindOf{
	"FunctionName": str, "EventSourceArn": str, "Enabled": boolean, "BatchSize": integer,
	"FilterCriteria": other, "MaximumBatchingWindowInSeconds": integer, "ParallelizationFactor": integer,
	"StartingPosition": str, "StartingPositionTimestamp": number, "DestinationConfig": other,
	"MaximumRecordAgeInSeconds": integer, "BisectBatchOnFunctionError": boolean, "MaximumRetryAttempts": integer,
	"TumblingWindowInSeconds": integer, "Topics": other, "Queues": other, "SourceAccessConfigurations": other,
	"SelfManagedEventSource": other, "FunctionResponseTypes": other, "AmazonManagedKafkaEventSourceConfig": other,
	"SelfManagedKafkaEventSourceConfig": other, "ScalingConfig": other, "DocumentDBEventSourceConfig": other,
	"KMSKeyArn": str, "MetricsConfig": other, "LoggingConfig": other, "ProvisionedPollerConfig": other, "Tags": other,
}

type kindOf int

const (
	other kindOf = iota
	str
	integer
	number
	boolean
)

// nested are members inside objects that are numbers or booleans.
var nested = map[string]map[string]kindOf{
	"ScalingConfig":           {"MaximumConcurrency": integer},
	"ProvisionedPollerConfig": {"MinimumPollers": integer, "MaximumPollers": integer},
}

// finish converts what a template gave as strings into the types of the
// request (CloudFormation converts a parameter's "10" into the number a
// property takes) and filter patterns given as YAML objects into the JSON
// text the API takes, and returns the request's JSON.
func finish(req *object) (json.RawMessage, error) {
	for _, k := range req.keys {
		v := req.vals[k]
		req.vals[k] = convert(v, members[k])
		if obj, ok := v.(*object); ok {
			for nk, kind := range nested[k] {
				if nv, ok := obj.get(nk); ok {
					obj.set(nk, convert(nv, kind))
				}
			}
		}
	}
	if fc, ok := req.get("FilterCriteria"); ok {
		if fco, ok := fc.(*object); ok {
			if fs, ok := fco.get("Filters"); ok {
				if list, ok := fs.([]any); ok {
					for _, f := range list {
						fo, ok := f.(*object)
						if !ok {
							continue
						}
						if p, ok := fo.get("Pattern"); ok {
							if _, isStr := p.(string); !isStr && p != nil {
								b, err := json.Marshal(p)
								if err != nil {
									return nil, err
								}
								fo.set("Pattern", string(b))
							}
						}
					}
				}
			}
		}
	}
	return json.Marshal(req)
}

func convert(v any, kind kindOf) any {
	s, ok := v.(string)
	if !ok {
		return v
	}
	switch kind {
	case integer:
		if i, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err == nil {
			return i
		}
	case number:
		if f, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil {
			return f
		}
	case boolean:
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "true":
			return true
		case "false":
			return false
		}
	}
	return v
}

// origin is a Mapping's Origin.
func origin(file string, line int, what string) string {
	return fmt.Sprintf("%s:%d: %s", file, line, what)
}
