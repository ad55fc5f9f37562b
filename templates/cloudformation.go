package templates

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// samEvent is how one SAM event type becomes a CreateEventSourceMapping
// request: the property that names the source, and the properties that
// belong in a nested member of the request.
type samEvent struct {
	source string            // the property that is the EventSourceArn
	into   map[string]string // property -> member it goes into
}

var samEvents = map[string]samEvent{
	"SQS":      {source: "Queue"},
	"Kinesis":  {source: "Stream"},
	"DynamoDB": {source: "Stream"},
	"MSK": {source: "Stream", into: map[string]string{
		"ConsumerGroupId": "AmazonManagedKafkaEventSourceConfig", "SchemaRegistryConfig": "AmazonManagedKafkaEventSourceConfig"}},
	"SelfManagedKafka": {into: map[string]string{
		"ConsumerGroupId": "SelfManagedKafkaEventSourceConfig", "SchemaRegistryConfig": "SelfManagedKafkaEventSourceConfig"}},
	"MQ": {source: "Broker"},
	"DocumentDB": {source: "Cluster", into: map[string]string{
		"DatabaseName": "DocumentDBEventSourceConfig", "CollectionName": "DocumentDBEventSourceConfig", "FullDocument": "DocumentDBEventSourceConfig"}},
}

// samIAMOnly are SAM event properties that only shape the IAM policy SAM
// generates; they have no part in the mapping.
var samIAMOnly = map[string]bool{"DynamicPolicyName": true, "SecretsManagerKmsKeyId": true}

func parseCloudFormation(file string, root *yaml.Node, o *Options) (*Template, error) {
	e, err := newEvaluator(file, root, o)
	if err != nil {
		return nil, err
	}
	t := &Template{Format: CloudFormation}
	if isSAM(root) {
		t.Format = SAM
	}
	for _, p := range pairs(field(root, "Resources")) {
		r := e.resources[p[0].Value]
		switch r.typ {
		case "AWS::Serverless::Function", "AWS::Lambda::EventSourceMapping":
		default:
			continue
		}
		ok, err := e.created(r)
		if err != nil {
			return nil, err
		}
		if !ok {
			c := deref(field(r.node, "Condition")).Value
			t.Ignored = append(t.Ignored, fmt.Sprintf("%s (condition %s is false)", r.id, c))
			continue
		}
		if r.typ == "AWS::Lambda::EventSourceMapping" {
			m, err := e.eventSourceMapping(r)
			if err != nil {
				return nil, err
			}
			t.Mappings = append(t.Mappings, m)
			continue
		}
		// The function's name, read at its first event source mapping:
		// a function with only Api or Schedule events needs none.
		fn := ""
		name := func() (string, error) {
			if fn != "" {
				return fn, nil
			}
			restore := e.at(r.id, "FunctionName")
			defer restore()
			var err error
			fn, err = e.name(r, "FunctionName", p[0])
			return fn, err
		}
		for _, ev := range pairs(field(r.props, "Events")) {
			m, ignored, err := e.samEvent(r, name, ev[0].Value, ev[1])
			if err != nil {
				return nil, err
			}
			if ignored != "" {
				t.Ignored = append(t.Ignored, ignored)
				continue
			}
			t.Mappings = append(t.Mappings, m)
		}
	}
	return t, nil
}

// isSAM reports whether the template's Transform names the SAM transform.
func isSAM(root *yaml.Node) bool {
	tr := deref(field(root, "Transform"))
	if tr == nil {
		return false
	}
	if tr.Kind == yaml.ScalarNode {
		return strings.HasPrefix(tr.Value, "AWS::Serverless")
	}
	for _, c := range tr.Content {
		if c = deref(c); c != nil && strings.HasPrefix(c.Value, "AWS::Serverless") {
			return true
		}
	}
	return false
}

// samEvent translates one event of an AWS::Serverless::Function. An event
// that is not an event source mapping is returned as ignored.
func (e *evaluator) samEvent(r *resource, fnName func() (string, error), name string, ev *yaml.Node) (Mapping, string, error) {
	path := "Events." + name
	restore := e.at(r.id, path+".Type")
	defer restore()
	tn := deref(field(ev, "Type"))
	if tn == nil {
		return Mapping{}, "", e.errf(deref(ev), "the event has no Type")
	}
	typ, err := e.evalString(tn, "Type")
	if err != nil {
		return Mapping{}, "", err
	}
	kind, ok := samEvents[typ]
	if !ok {
		return Mapping{}, fmt.Sprintf("%s.%s (%s)", r.id, path, typ), nil
	}
	fn, err := fnName()
	if err != nil {
		return Mapping{}, "", err
	}
	req := newObject()
	req.set("FunctionName", fn)
	props := deref(field(ev, "Properties"))
	for _, p := range pairs(props) {
		key := p[0].Value
		e.res, e.prop = r.id, path+".Properties."+key
		if samIAMOnly[key] {
			continue
		}
		v, err := e.eval(p[1])
		if err != nil {
			return Mapping{}, "", err
		}
		if v == noValue {
			continue
		}
		switch {
		case key == kind.source && kind.source != "":
			req.set("EventSourceArn", v)
		case key == "KafkaBootstrapServers" && typ == "SelfManagedKafka":
			eps := newObject()
			eps.set("KAFKA_BOOTSTRAP_SERVERS", v)
			sme := newObject()
			sme.set("Endpoints", eps)
			req.set("SelfManagedEventSource", sme)
		case kind.into[key] != "":
			parent, _ := req.get(kind.into[key])
			obj, _ := parent.(*object)
			if obj == nil {
				obj = newObject()
				req.set(kind.into[key], obj)
			}
			obj.set(key, v)
		case key == "KmsKeyArn":
			req.set("KMSKeyArn", v)
		case key == "DestinationConfig":
			// SAM's OnFailure.Type (SQS, SNS, S3) only chooses the policy
			// SAM writes.
			if dc, ok := v.(*object); ok {
				for _, k := range []string{"OnFailure", "OnSuccess"} {
					if d, ok := dc.get(k); ok {
						if do, ok := d.(*object); ok {
							do.del("Type")
						}
					}
				}
			}
			req.set(key, v)
		case isMember(key):
			if key == "FunctionName" || key == "EventSourceArn" || key == "Tags" {
				return Mapping{}, "", e.errf(p[0], "%s is not a property of a SAM %s event", key, typ)
			}
			req.set(key, v)
		default:
			return Mapping{}, "", e.errf(p[0], "%s is not a property of a SAM %s event", key, typ)
		}
	}
	e.res, e.prop = r.id, path+".Properties"
	if _, ok := req.get("EventSourceArn"); !ok && kind.source != "" {
		return Mapping{}, "", e.errf(deref(ev), "the %s event has no %s", typ, kind.source)
	}
	body, err := finish(req)
	if err != nil {
		return Mapping{}, "", e.wrap(deref(ev), err)
	}
	return Mapping{Request: body, Origin: origin(e.file, line(ev), fmt.Sprintf("%s.%s (%s)", r.id, path, typ))}, "", nil
}

func isMember(k string) bool { _, ok := members[k]; return ok }

func line(n *yaml.Node) int {
	if d := deref(n); d != nil {
		return d.Line
	}
	return 0
}

// eventSourceMapping translates an AWS::Lambda::EventSourceMapping: its
// properties are the request's members, but for KmsKeyArn, Tags (a list
// of Key and Value) and SelfManagedEventSource's KafkaBootstrapServers.
func (e *evaluator) eventSourceMapping(r *resource) (Mapping, error) {
	req := newObject()
	for _, p := range pairs(r.props) {
		key := p[0].Value
		restore := e.at(r.id, "Properties."+key)
		v, err := e.eval(p[1])
		if err != nil {
			restore()
			return Mapping{}, err
		}
		if v == noValue {
			restore()
			continue
		}
		switch key {
		case "KmsKeyArn":
			req.set("KMSKeyArn", v)
		case "Tags":
			tags, err := e.tags(p[1], v)
			if err != nil {
				restore()
				return Mapping{}, err
			}
			req.set(key, tags)
		case "SelfManagedEventSource":
			if sme, ok := v.(*object); ok {
				if eps, ok := sme.get("Endpoints"); ok {
					if epo, ok := eps.(*object); ok {
						if ks, ok := epo.get("KafkaBootstrapServers"); ok {
							epo.del("KafkaBootstrapServers")
							epo.set("KAFKA_BOOTSTRAP_SERVERS", ks)
						}
					}
				}
			}
			req.set(key, v)
		case "KMSKeyArn":
			err := e.errf(p[0], "%s is not a property of AWS::Lambda::EventSourceMapping (KmsKeyArn is)", key)
			restore()
			return Mapping{}, err
		default:
			if !isMember(key) {
				err := e.errf(p[0], "%s is not a property of AWS::Lambda::EventSourceMapping", key)
				restore()
				return Mapping{}, err
			}
			req.set(key, v)
		}
		restore()
	}
	body, err := finish(req)
	if err != nil {
		return Mapping{}, e.wrap(r.node, err)
	}
	return Mapping{Request: body, Origin: origin(e.file, r.line, r.id+" (AWS::Lambda::EventSourceMapping)")}, nil
}

// tags turns CloudFormation's [{Key, Value}] into the API's map.
func (e *evaluator) tags(n *yaml.Node, v any) (*object, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, e.errf(deref(n), "Tags must be a list of Key and Value, not %s", describe(v))
	}
	out := newObject()
	for _, it := range list {
		o, _ := it.(*object)
		k, okK := o.get("Key")
		val, okV := o.get("Value")
		ks, okKs := text(k)
		vs, okVs := text(val)
		if o == nil || !okK || !okV || !okKs || !okVs {
			return nil, e.errf(deref(n), "every tag must be {Key: string, Value: string}")
		}
		out.set(ks, vs)
	}
	return out, nil
}
