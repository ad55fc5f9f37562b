package templates

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// slsEvents are the Serverless Framework event types that are event source
// mappings, with the properties each accepts (the framework's own schema).
var slsEvents = map[string]map[string]bool{
	"sqs": set("arn", "batchSize", "maximumBatchingWindow", "enabled", "functionResponseType", "filterPatterns", "maximumConcurrency"),
	"stream": set("arn", "type", "batchSize", "parallelizationFactor", "startingPosition", "startingPositionTimestamp", "enabled",
		"consumer", "batchWindow", "maximumRetryAttempts", "bisectBatchOnFunctionError", "maximumRecordAgeInSeconds",
		"functionResponseType", "destinations", "tumblingWindowInSeconds", "filterPatterns"),
	"msk": set("arn", "topic", "batchSize", "maximumBatchingWindow", "enabled", "startingPosition", "startingPositionTimestamp",
		"saslScram512", "consumerGroupId", "filterPatterns"),
	"kafka": set("accessConfigurations", "topic", "bootstrapServers", "batchSize", "maximumBatchingWindow", "enabled",
		"startingPosition", "startingPositionTimestamp", "consumerGroupId", "filterPatterns"),
	"activemq": set("arn", "basicAuthArn", "batchSize", "maximumBatchingWindow", "enabled", "queue", "filterPatterns"),
	"rabbitmq": set("arn", "basicAuthArn", "batchSize", "maximumBatchingWindow", "enabled", "queue", "virtualHost", "filterPatterns"),
}

func set(ks ...string) map[string]bool {
	m := make(map[string]bool, len(ks))
	for _, k := range ks {
		m[k] = true
	}
	return m
}

// kafkaAccess is the SourceAccessConfigurations Type (and URI prefix) of
// each key of a kafka event's accessConfigurations.
var kafkaAccess = map[string][2]string{
	"vpcSubnet":                {"VPC_SUBNET", "subnet:"},
	"vpcSecurityGroup":         {"VPC_SECURITY_GROUP", "security_group:"},
	"saslPlainAuth":            {"BASIC_AUTH", ""},
	"saslScram256Auth":         {"SASL_SCRAM_256_AUTH", ""},
	"saslScram512Auth":         {"SASL_SCRAM_512_AUTH", ""},
	"clientCertificateTlsAuth": {"CLIENT_CERTIFICATE_TLS_AUTH", ""},
	"serverRootCaCertificate":  {"SERVER_ROOT_CA_CERTIFICATE", ""},
}

// errNotFound marks a variable with no value, so its fallback is tried.
var errNotFound = errors.New("no value")

// slsVars resolves the Serverless Framework's ${source:address, fallback}
// variables of a serverless.yml.
type slsVars struct {
	e     *evaluator
	root  *yaml.Node
	depth int
}

func parseServerless(file string, root *yaml.Node, o *Options) (*Template, error) {
	// resources: {Resources, Conditions, Outputs} is CloudFormation that
	// the functions' events may refer to.
	e, err := newEvaluator(file, slsResources(root), o)
	if err != nil {
		return nil, err
	}
	v := &slsVars{e: e, root: root}
	e.str = v.resolve
	t := &Template{Format: Serverless}

	e.res, e.prop = "service", ""
	svcNode := field(root, "service")
	if n := field(svcNode, "name"); n != nil { // the framework's older {name: ...}
		svcNode = n
	}
	service, err := e.evalString(svcNode, "service")
	if err != nil {
		return nil, err
	}
	stage, err := v.stage()
	if err != nil {
		return nil, err
	}
	fns := pairs(field(root, "functions"))
	names := make([]string, len(fns))
	for i, f := range fns {
		key := f[0].Value
		e.res, e.prop = key, "name"
		names[i] = service + "-" + stage + "-" + key
		if n := field(f[1], "name"); n != nil {
			if names[i], err = e.evalString(n, "name"); err != nil {
				return nil, err
			}
		}
		// The framework's logical id of the function, which resources
		// may refer to (!GetAtt HelloLambdaFunction.Arn).
		id := slsLogicalID(key)
		if _, ok := e.resources[id]; !ok {
			e.resources[id] = &resource{id: id, typ: "AWS::Lambda::Function", line: f[0].Line, node: deref(f[1]), fixed: names[i]}
		}
	}
	for i, f := range fns {
		key := f[0].Value
		evs := deref(field(f[1], "events"))
		if evs == nil {
			continue
		}
		if evs.Kind != yaml.SequenceNode {
			return nil, &Error{File: file, Line: evs.Line, Resource: key, Property: "events", Err: errors.New("events must be a list")}
		}
		for j, ev := range evs.Content {
			ev = deref(ev)
			if ev == nil || ev.Kind != yaml.MappingNode || len(ev.Content) != 2 {
				return nil, &Error{File: file, Line: line(ev), Resource: key, Property: fmt.Sprintf("events[%d]", j), Err: errors.New("an event must be a map with one key, its type")}
			}
			typ := ev.Content[0].Value
			if slsEvents[typ] == nil {
				t.Ignored = append(t.Ignored, fmt.Sprintf("%s.events[%d] (%s)", key, j, typ))
				continue
			}
			m, err := e.slsEvent(key, names[i], j, typ, ev.Content[0], ev.Content[1])
			if err != nil {
				return nil, err
			}
			t.Mappings = append(t.Mappings, m)
		}
	}
	return t, nil
}

// slsResources returns the CloudFormation part of a serverless.yml's
// resources (a map, or a list of maps whose Resources are merged).
func slsResources(root *yaml.Node) *yaml.Node {
	rs := deref(field(root, "resources"))
	if rs == nil || rs.Kind != yaml.SequenceNode {
		return rs
	}
	out := &yaml.Node{Kind: yaml.MappingNode}
	merged := map[string]*yaml.Node{}
	for _, it := range rs.Content {
		for _, p := range pairs(it) {
			sec := merged[p[0].Value]
			if sec == nil {
				sec = &yaml.Node{Kind: yaml.MappingNode, Line: p[0].Line}
				merged[p[0].Value] = sec
				out.Content = append(out.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: p[0].Value}, sec)
			}
			if v := deref(p[1]); v != nil && v.Kind == yaml.MappingNode {
				sec.Content = append(sec.Content, v.Content...)
			}
		}
	}
	return out
}

// slsLogicalID is the framework's logical id of a function's
// AWS::Lambda::Function: "hello-world" -> "HelloDashworldLambdaFunction".
func slsLogicalID(fn string) string {
	n := strings.ReplaceAll(strings.ReplaceAll(fn, "-", "Dash"), "_", "Underscore")
	if n != "" {
		n = strings.ToUpper(n[:1]) + n[1:]
	}
	return n + "LambdaFunction"
}

// stage is the stage: --stage, else provider.stage, else "dev".
func (v *slsVars) stage() (string, error) {
	if v.e.o.Stage != "" {
		return v.e.o.Stage, nil
	}
	n := field(field(v.root, "provider"), "stage")
	if n == nil {
		return "dev", nil
	}
	restore := v.e.at("provider", "stage")
	defer restore()
	return v.e.evalString(n, "provider.stage")
}

// resolve replaces the variables of a string. A string that is one
// variable becomes the variable's value, of any type.
func (v *slsVars) resolve(s string, n *yaml.Node) (any, error) {
	v.depth++
	defer func() { v.depth-- }()
	if v.depth > 32 {
		return nil, v.e.errf(n, "variables refer to each other more than 32 deep (a cycle?) in %q", s)
	}
	if strings.HasPrefix(s, "${") {
		if end := closing(s, 0); end == len(s)-1 {
			return v.variable(s[2:end], n)
		}
	}
	var b strings.Builder
	rest := s
	for {
		i := strings.Index(rest, "${")
		if i < 0 {
			b.WriteString(rest)
			break
		}
		end := closing(rest, i)
		if end < 0 {
			return nil, v.e.errf(n, "%q: ${ is not closed", s)
		}
		b.WriteString(rest[:i])
		val, err := v.variable(rest[i+2:end], n)
		if err != nil {
			return nil, err
		}
		t, ok := text(val)
		if !ok {
			return nil, v.e.errf(n, "${%s} is %s and cannot be part of a string", rest[i+2:end], describe(val))
		}
		b.WriteString(t)
		if b.Len() > maxValue {
			return nil, v.e.errf(n, "variables make a string longer than %d bytes", maxValue)
		}
		rest = rest[end+1:]
	}
	return b.String(), nil
}

// closing returns the index of the } that closes the ${ at s[i:], or -1.
func closing(s string, i int) int {
	depth := 0
	var quote byte
	for j := i; j < len(s); j++ {
		c := s[j]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			if depth > 0 {
				quote = c
			}
		case c == '$' && j+1 < len(s) && s[j+1] == '{':
			depth++
			j++
		case c == '}':
			depth--
			if depth == 0 {
				return j
			}
		}
	}
	return -1
}

// alternatives splits "a, b, 'c'" at the commas outside quotes and ${}.
func alternatives(expr string) []string {
	var out []string
	depth, start := 0, 0
	var quote byte
	for j := 0; j < len(expr); j++ {
		c := expr[j]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '$' && j+1 < len(expr) && expr[j+1] == '{':
			depth++
			j++
		case c == '}':
			depth--
		case c == ',' && depth == 0:
			out = append(out, strings.TrimSpace(expr[start:j]))
			start = j + 1
		}
	}
	return append(out, strings.TrimSpace(expr[start:]))
}

// variable resolves the inside of one ${...}: the first alternative that
// has a value.
func (v *slsVars) variable(expr string, n *yaml.Node) (any, error) {
	if v.e.steps++; v.e.steps > maxSteps {
		return nil, v.e.errf(n, "the template is too large to evaluate (more than %d values, counting aliases and references)", maxSteps)
	}
	for _, alt := range alternatives(expr) {
		val, err := v.source(alt, n)
		if errors.Is(err, errNotFound) {
			continue
		}
		return val, err
	}
	return nil, v.e.errf(n, "${%s}: no value, and no fallback that has one", expr)
}

func (v *slsVars) source(alt string, n *yaml.Node) (any, error) {
	switch {
	case alt == "":
		return nil, errNotFound
	case strings.HasPrefix(alt, "${"):
		val, err := v.resolve(alt, n)
		var te *Error
		if errors.As(err, &te) && strings.Contains(te.Err.Error(), "no fallback") {
			return nil, errNotFound
		}
		return val, err
	case len(alt) >= 2 && (alt[0] == '\'' || alt[0] == '"') && alt[len(alt)-1] == alt[0]:
		return alt[1 : len(alt)-1], nil
	case alt == "true" || alt == "false":
		return alt == "true", nil
	}
	if i, err := strconv.ParseInt(alt, 10, 64); err == nil {
		return i, nil
	}
	src, addr, ok := strings.Cut(alt, ":")
	if !ok {
		return nil, v.e.errf(n, "${%s}: a variable is source:address (self:, opt:, sls:, env:, aws:)", alt)
	}
	o := v.e.o
	switch src {
	case "self":
		node := v.root
		if addr != "" {
			for _, part := range strings.Split(addr, ".") {
				d := deref(node)
				if d != nil && d.Kind == yaml.SequenceNode {
					i, err := strconv.Atoi(part)
					if err != nil || i < 0 || i >= len(d.Content) {
						return nil, errNotFound
					}
					node = d.Content[i]
					continue
				}
				if node = field(node, part); node == nil {
					return nil, errNotFound
				}
			}
		}
		return v.e.eval(node)
	case "opt":
		if addr == "stage" && o.Stage != "" {
			return o.Stage, nil
		}
		return nil, errNotFound
	case "sls":
		switch addr {
		case "stage":
			return v.stage()
		}
	case "env":
		if s, ok := o.LookupEnv(addr); ok {
			return s, nil
		}
		return nil, errNotFound
	case "aws":
		switch addr {
		case "region":
			return o.Region, nil
		case "accountId":
			return o.Account, nil
		}
	}
	return nil, v.e.errf(n, "${%s}: esmd does not resolve %s: variables (it resolves self:, opt:stage, sls:stage, env:, aws:region and aws:accountId)", alt, src)
}

// slsEvent translates one event source event of a function, as the
// framework compiles it into an AWS::Lambda::EventSourceMapping, with the
// framework's defaults (BatchSize 10 and StartingPosition TRIM_HORIZON for
// streams, BatchSize 10 for SQS, Enabled true).
func (e *evaluator) slsEvent(fnKey, fnName string, idx int, typ string, keyNode, val *yaml.Node) (Mapping, error) {
	path := fmt.Sprintf("events[%d].%s", idx, typ)
	e.res, e.prop = fnKey, path
	props := map[string]*yaml.Node{}
	if _, _, isFn := intrinsic(deref(val)); isFn || deref(val).Kind == yaml.ScalarNode {
		if typ != "sqs" && typ != "stream" {
			return Mapping{}, e.errf(keyNode, "a %s event is a map of properties", typ)
		}
		props["arn"] = val
	} else {
		for _, p := range pairs(val) {
			if !slsEvents[typ][p[0].Value] {
				return Mapping{}, e.errf(p[0], "%s is not a property of a %s event", p[0].Value, typ)
			}
			props[p[0].Value] = p[1]
		}
	}
	var firstErr error
	// get evaluates property k; an error is kept in firstErr.
	get := func(k string) (any, bool) {
		n, ok := props[k]
		if !ok || firstErr != nil {
			return nil, false
		}
		e.prop = path + "." + k
		v, err := e.eval(n)
		if err != nil {
			firstErr = err
			return nil, false
		}
		return v, v != noValue
	}
	req := newObject()
	// copyTo sets member from property k when it is given, else to def.
	copyTo := func(member, k string, def any) {
		if v, ok := get(k); ok {
			req.set(member, v)
		} else if def != nil {
			req.set(member, def)
		}
	}
	need := func(k string) {
		if _, ok := props[k]; !ok && firstErr == nil {
			e.prop = path
			firstErr = e.errf(keyNode, "a %s event needs %s", typ, k)
		}
	}
	req.set("FunctionName", fnName)
	switch typ {
	case "sqs":
		need("arn")
		copyTo("EventSourceArn", "arn", nil)
		copyTo("BatchSize", "batchSize", int64(10))
		copyTo("MaximumBatchingWindowInSeconds", "maximumBatchingWindow", nil)
		copyTo("Enabled", "enabled", true)
		if v, ok := get("maximumConcurrency"); ok {
			sc := newObject()
			sc.set("MaximumConcurrency", v)
			req.set("ScalingConfig", sc)
		}
	case "stream":
		need("arn")
		copyTo("EventSourceArn", "arn", nil)
		copyTo("BatchSize", "batchSize", int64(10))
		copyTo("ParallelizationFactor", "parallelizationFactor", nil)
		copyTo("StartingPosition", "startingPosition", "TRIM_HORIZON")
		copyTo("StartingPositionTimestamp", "startingPositionTimestamp", nil)
		copyTo("Enabled", "enabled", true)
		copyTo("MaximumBatchingWindowInSeconds", "batchWindow", nil)
		copyTo("MaximumRetryAttempts", "maximumRetryAttempts", nil)
		copyTo("BisectBatchOnFunctionError", "bisectBatchOnFunctionError", nil)
		copyTo("MaximumRecordAgeInSeconds", "maximumRecordAgeInSeconds", nil)
		copyTo("TumblingWindowInSeconds", "tumblingWindowInSeconds", nil)
		if v, ok := get("destinations"); ok {
			dst, _ := v.(*object)
			of, _ := dst.get("onFailure")
			if o, isObj := of.(*object); isObj {
				of, _ = o.get("arn")
			}
			if _, isStr := of.(string); !isStr {
				return Mapping{}, e.errf(props["destinations"], "destinations needs onFailure: an ARN, or {arn, type}")
			}
			d, onf := newObject(), newObject()
			onf.set("Destination", of)
			d.set("OnFailure", onf)
			req.set("DestinationConfig", d)
		}
		if v, ok := get("consumer"); ok {
			arn, isStr := v.(string)
			if !isStr {
				return Mapping{}, e.errf(props["consumer"], "consumer: true has the framework register a stream consumer esmd cannot name; register it and give its ARN as consumer")
			}
			req.set("EventSourceArn", arn)
		}
	case "msk":
		need("arn")
		need("topic")
		copyTo("EventSourceArn", "arn", nil)
		copyTo("StartingPosition", "startingPosition", "TRIM_HORIZON")
		copyTo("StartingPositionTimestamp", "startingPositionTimestamp", nil)
		if v, ok := get("topic"); ok {
			req.set("Topics", []any{v})
		}
		copyTo("BatchSize", "batchSize", nil)
		copyTo("MaximumBatchingWindowInSeconds", "maximumBatchingWindow", nil)
		consumerGroup(req, "AmazonManagedKafkaEventSourceConfig", get)
		copyTo("Enabled", "enabled", nil)
		if v, ok := get("saslScram512"); ok {
			req.set("SourceAccessConfigurations", []any{access("SASL_SCRAM_512_AUTH", v)})
		}
	case "kafka":
		need("bootstrapServers")
		need("topic")
		need("accessConfigurations")
		copyTo("StartingPosition", "startingPosition", "TRIM_HORIZON")
		copyTo("StartingPositionTimestamp", "startingPositionTimestamp", nil)
		if v, ok := get("bootstrapServers"); ok {
			eps, sme := newObject(), newObject()
			eps.set("KAFKA_BOOTSTRAP_SERVERS", v)
			sme.set("Endpoints", eps)
			req.set("SelfManagedEventSource", sme)
		}
		if v, ok := get("topic"); ok {
			req.set("Topics", []any{v})
		}
		if n, ok := props["accessConfigurations"]; ok {
			sacs := []any{}
			for _, p := range pairs(n) {
				kind, known := kafkaAccess[p[0].Value]
				e.prop = path + ".accessConfigurations." + p[0].Value
				if !known {
					return Mapping{}, e.errf(p[0], "%s is not an access configuration of a kafka event", p[0].Value)
				}
				v, err := e.eval(p[1])
				if err != nil {
					return Mapping{}, err
				}
				vals, isList := v.([]any)
				if !isList {
					vals = []any{v}
				}
				for _, it := range vals {
					s, isStr := text(it)
					if !isStr {
						return Mapping{}, e.errf(p[1], "%s must be a string or a list of strings", p[0].Value)
					}
					sacs = append(sacs, access(kind[0], kind[1]+s))
				}
			}
			req.set("SourceAccessConfigurations", sacs)
		}
		copyTo("BatchSize", "batchSize", nil)
		copyTo("MaximumBatchingWindowInSeconds", "maximumBatchingWindow", nil)
		consumerGroup(req, "SelfManagedKafkaEventSourceConfig", get)
		copyTo("Enabled", "enabled", nil)
	case "activemq", "rabbitmq":
		need("arn")
		need("queue")
		need("basicAuthArn")
		copyTo("EventSourceArn", "arn", nil)
		if v, ok := get("queue"); ok {
			req.set("Queues", []any{v})
		}
		sacs := []any{}
		if v, ok := get("basicAuthArn"); ok {
			sacs = append(sacs, access("BASIC_AUTH", v))
		}
		if v, ok := get("virtualHost"); ok {
			sacs = append(sacs, access("VIRTUAL_HOST", v))
		}
		req.set("SourceAccessConfigurations", sacs)
		copyTo("BatchSize", "batchSize", nil)
		copyTo("MaximumBatchingWindowInSeconds", "maximumBatchingWindow", nil)
		copyTo("Enabled", "enabled", nil)
	}
	if v, ok := get("functionResponseType"); ok {
		req.set("FunctionResponseTypes", []any{v})
	}
	if v, ok := get("filterPatterns"); ok {
		list, isList := v.([]any)
		if !isList {
			return Mapping{}, e.errf(props["filterPatterns"], "filterPatterns must be a list of patterns")
		}
		filters := make([]any, len(list))
		for i, p := range list {
			f := newObject()
			f.set("Pattern", p) // finish writes an object as its JSON text, as JSON.stringify does
			filters[i] = f
		}
		fc := newObject()
		fc.set("Filters", filters)
		req.set("FilterCriteria", fc)
	}
	if firstErr != nil {
		return Mapping{}, firstErr
	}
	body, err := finish(req)
	if err != nil {
		return Mapping{}, e.wrap(keyNode, err)
	}
	return Mapping{Request: body, Origin: origin(e.file, keyNode.Line, fmt.Sprintf("%s.%s", fnKey, path))}, nil
}

func access(typ string, uri any) *object {
	o := newObject()
	o.set("Type", typ)
	o.set("URI", uri)
	return o
}

func consumerGroup(req *object, member string, get func(string) (any, bool)) {
	if v, ok := get("consumerGroupId"); ok {
		c := newObject()
		c.set("ConsumerGroupId", v)
		req.set(member, c)
	}
}
