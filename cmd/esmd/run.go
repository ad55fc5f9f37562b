package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"sigs.k8s.io/yaml"

	"github.com/esmd/esmd/api"
	"github.com/esmd/esmd/esm"
	"github.com/esmd/esmd/internal/awsconfig"
	"github.com/esmd/esmd/templates"
)

type runOpts struct {
	*common
	file      string
	overrides listFlag
	imports   listFlag
	resources listFlag
	stage     string
}

func runFlags(out io.Writer) *runOpts {
	o := &runOpts{common: newCommon("esmd run", out, "")}
	fs := o.fs
	fs.StringVar(&o.file, "f", "", "mappings file: a SAM, CloudFormation or Serverless Framework template (YAML or JSON), or CreateEventSourceMapping requests (one, a list, or {\"EventSourceMappings\": [...]})")
	fs.Var(&o.overrides, "parameter-overrides", "template parameters, as SAM takes them: 'Key=Value Key2=Value2' or 'ParameterKey=Key,ParameterValue=Value ...' (repeatable)")
	fs.Var(&o.imports, "import-value", "`NAME=VALUE`: what Fn::ImportValue NAME returns (repeatable)")
	fs.Var(&o.resources, "resource", "`ID=VALUE` or `ID.Attr=VALUE`: what Ref ID or GetAtt ID.Attr returns, for values esmd cannot form (a DynamoDB table's StreamArn, a resource type it does not know) (repeatable)")
	fs.StringVar(&o.stage, "stage", "", "Serverless Framework stage (default: provider.stage, else dev)")
	return o
}

func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := runFlags(stderr)
	if err := parse(o.fs, args); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	if o.file == "" {
		fmt.Fprintln(stderr, "esmd run: -f FILE is required")
		return errUsage
	}
	if err := o.validate(); err != nil {
		fmt.Fprintln(stderr, "esmd run:", err)
		return errUsage
	}
	topts, err := o.templateOptions()
	if err != nil {
		fmt.Fprintln(stderr, "esmd run:", err)
		return errUsage
	}
	topts.StreamArn = func(table string) (string, error) { return latestStream(ctx, o.common, table) }
	log := o.logger(stderr)
	decls, isTemplate, err := readMappingsFile(o.file, topts, log)
	if err != nil {
		return err
	}
	if isTemplate && !o.set("invoke-by") {
		// The functions of a template are served by name (sam local
		// start-lambda takes no ARN: aws/aws-sam-cli#8289).
		o.invokeBy = "name"
	}
	if isTemplate && !o.set("function-check") {
		// The template declares its functions, and sam local serves
		// Invoke only (no GetFunction).
		o.functionCheck = "never"
	}
	return serve(ctx, o.common, log, func(e *esm.Engine, addr string) error {
		for _, d := range decls {
			m, created, err := e.Declare(ctx, d.cfg)
			if err != nil {
				return fmt.Errorf("%s: %w", d.origin, err)
			}
			verb := "updated"
			if created {
				verb = "created"
			}
			log.Info("mapping "+verb, "uuid", m.UUID, "function", m.FunctionArn, "source", m.Source, "state", m.State)
		}
		return nil
	})
}

// templateOptions are what a template's references resolve to, from the
// flags.
func (o *runOpts) templateOptions() (templates.Options, error) {
	t := templates.Options{Region: o.region, Account: o.account, Stage: o.stage,
		Parameters: map[string]string{}, Imports: map[string]string{}, Resources: map[string]string{}}
	for _, s := range o.overrides {
		if err := templates.ParseParameterOverrides(s, t.Parameters); err != nil {
			return t, err
		}
	}
	for flag, l := range map[string]listFlag{"--import-value": o.imports, "--resource": o.resources} {
		into := t.Imports
		if flag == "--resource" {
			into = t.Resources
		}
		for _, s := range l {
			k, v, ok := strings.Cut(s, "=")
			if !ok || k == "" {
				return t, fmt.Errorf("%s %q: write NAME=VALUE", flag, s)
			}
			into[k] = v
		}
	}
	return t, nil
}

// latestStream is the ARN of the latest stream of a DynamoDB table
// (ListStreams), where the SDK configuration points DynamoDB Streams
// (AWS_ENDPOINT_URL_DYNAMODB_STREAMS).
func latestStream(ctx context.Context, c *common, table string) (string, error) {
	cfg, err := awsconfig.Load(ctx, c.region, c.lambdaEndpoint != "")
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := dynamodbstreams.NewFromConfig(cfg).ListStreams(ctx, &dynamodbstreams.ListStreamsInput{TableName: &table})
	if err != nil {
		return "", fmt.Errorf("ListStreams: %w", err)
	}
	if len(out.Streams) == 0 {
		return "", errors.New("the table has no stream")
	}
	// Streams are listed oldest first; a table has one enabled stream at most.
	return aws.ToString(out.Streams[len(out.Streams)-1].StreamArn), nil
}

// declared is one mapping of a mappings file and where it is declared.
type declared struct {
	cfg    *esm.Config
	origin string
}

// readMappingsFile reads a template (templates.Parse), else the
// --cli-input-json shapes, and decodes every request with the API's own
// decoder, so member names, types and errors are those of
// CreateEventSourceMapping.
func readMappingsFile(path string, topts templates.Options, log *slog.Logger) (_ []declared, template bool, _ error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, false, err
	}
	var items []json.RawMessage
	var origins []string
	tmpl, err := templates.Parse(path, raw, topts)
	switch {
	case err == nil:
		if len(tmpl.Ignored) > 0 {
			log.Info("template: ignored, not event source mappings: "+strings.Join(tmpl.Ignored, ", "), "file", path)
		}
		if len(tmpl.Mappings) == 0 {
			return nil, true, fmt.Errorf("%s: the %s template declares no event source mappings", path, tmpl.Format)
		}
		log.Info("template read", "file", path, "format", tmpl.Format, "mappings", len(tmpl.Mappings))
		for _, m := range tmpl.Mappings {
			items = append(items, m.Request)
			origins = append(origins, m.Origin)
		}
	case errors.Is(err, templates.ErrNotTemplate):
		if items, err = cliInputs(path, raw); err != nil {
			return nil, false, err
		}
		for i := range items {
			origins = append(origins, fmt.Sprintf("%s: mapping %d", path, i+1))
		}
	default:
		return nil, false, err
	}
	out := make([]declared, len(items))
	for i, it := range items {
		var cfg esm.Config
		if err := api.DecodeBody(it, &cfg); err != nil {
			return nil, tmpl != nil, fmt.Errorf("%s: %w", origins[i], err)
		}
		out[i] = declared{cfg: &cfg, origin: origins[i]}
	}
	return out, tmpl != nil, nil
}

// cliInputs reads the shapes aws lambda create-event-source-mapping
// --cli-input-json takes: one request, a list, or {"EventSourceMappings":
// [...]}, in JSON or YAML.
func cliInputs(path string, raw []byte) ([]json.RawMessage, error) {
	js, err := yaml.YAMLToJSON(raw) // JSON is YAML, so both arrive here as JSON
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	js = bytes.TrimSpace(js)
	var items []json.RawMessage
	switch {
	case len(js) > 0 && js[0] == '[':
		if err := json.Unmarshal(js, &items); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
	default:
		var wrapper struct {
			EventSourceMappings []json.RawMessage `json:"EventSourceMappings"`
		}
		if err := json.Unmarshal(js, &wrapper); err == nil && wrapper.EventSourceMappings != nil {
			items = wrapper.EventSourceMappings
		} else {
			items = []json.RawMessage{js}
		}
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("%s: no mappings declared", path)
	}
	return items, nil
}
