package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"sigs.k8s.io/yaml"

	"github.com/esmd/esmd/api"
	"github.com/esmd/esmd/esm"
)

type runOpts struct {
	*common
	file string
}

func runFlags(out io.Writer) *runOpts {
	o := &runOpts{common: newCommon("esmd run", out, "")}
	o.fs.StringVar(&o.file, "f", "", "mappings file (JSON or YAML): one CreateEventSourceMapping request, a list of them, or {\"EventSourceMappings\": [...]}")
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
	cfgs, err := readMappingsFile(o.file)
	if err != nil {
		return err
	}
	log := o.logger(stderr)
	return serve(ctx, o.common, log, func(e *esm.Engine, addr string) error {
		for i, cfg := range cfgs {
			m, created, err := e.Declare(ctx, cfg)
			if err != nil {
				return fmt.Errorf("%s: mapping %d: %w", o.file, i+1, err)
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

// readMappingsFile decodes a mappings file with the API's own decoder, so
// member names, types and errors are those of CreateEventSourceMapping.
func readMappingsFile(path string) ([]*esm.Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
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
	out := make([]*esm.Config, len(items))
	for i, it := range items {
		var cfg esm.Config
		if err := api.DecodeBody(it, &cfg); err != nil {
			return nil, fmt.Errorf("%s: mapping %d: %w", path, i+1, err)
		}
		out[i] = &cfg
	}
	return out, nil
}
