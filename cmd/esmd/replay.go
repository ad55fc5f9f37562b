package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/esmd/esmd/api"
	"github.com/esmd/esmd/esm"
)

// replayPath is esmd's own endpoint (not AWS's) that rewinds one mapping:
// POST /esmd/event-source-mappings/{UUID}/replay.
const (
	replayPrefix = "/esmd/event-source-mappings/"
	replaySuffix = "/replay"
)

// replayRequest is the body of a replay call.
type replayRequest struct {
	// Position is TRIM_HORIZON, LATEST or AT_TIMESTAMP.
	Position string `json:"Position"`
	// Timestamp is AT_TIMESTAMP's time: Unix seconds (fractions allowed),
	// as StartingPositionTimestamp, or an RFC 3339 string.
	Timestamp json.RawMessage `json:"Timestamp,omitempty"`
}

// replayResponse is the answer: the mapping, now Updating, and where it
// was rewound to.
type replayResponse struct {
	UUID      string   `json:"UUID"`
	State     string   `json:"State"`
	Position  string   `json:"Position"`
	Timestamp *float64 `json:"Timestamp,omitempty"`
}

// replayer is what the replay endpoint needs of the engine.
type replayer interface {
	Replay(ctx context.Context, id string, to esm.Position) (*esm.Mapping, error)
}

// withReplay serves POST /esmd/event-source-mappings/{UUID}/replay beside
// the API (esmd's own call: AWS cannot change a mapping's position after
// create). Errors have the API's REST-JSON shape.
func withReplay(next http.Handler, e replayer, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.Path, replayPrefix)
		id, ok2 := strings.CutSuffix(rest, replaySuffix)
		if !ok || !ok2 || id == "" || strings.Contains(id, "/") {
			next.ServeHTTP(w, r)
			return
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
		if err != nil {
			api.WriteError(w, badReplay("Could not read the request body."))
			return
		}
		to, err := parseReplayRequest(body)
		if err != nil {
			api.WriteError(w, err)
			return
		}
		m, err := e.Replay(r.Context(), id, to)
		if err != nil {
			if ae := (*esm.Error)(nil); !errors.As(err, &ae) {
				log.Error("replay", "uuid", id, "err", err) // the answer shows no detail
			}
			api.WriteError(w, err)
			return
		}
		out := replayResponse{UUID: m.UUID, State: string(m.State), Position: to.Type}
		if to.Type == esm.ReplayAtTimestamp {
			ts := float64(to.Timestamp.UnixNano()) / 1e9
			out.Timestamp = &ts
		}
		data, _ := json.Marshal(out)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		w.Write(data)
	})
}

// badReplay is a replay request esmd cannot read, in the API's error shape.
func badReplay(format string, args ...any) *esm.Error {
	return &esm.Error{Type: esm.ErrTypeInvalidRequestContent, Status: http.StatusBadRequest, Message: fmt.Sprintf(format, args...)}
}

// parseReplayRequest reads {"Position": ..., "Timestamp": ...}.
func parseReplayRequest(body []byte) (esm.Position, error) {
	var req replayRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return esm.Position{}, badReplay("Could not parse request body into json: %v", err)
	}
	to := esm.Position{Type: req.Position}
	if len(req.Timestamp) == 0 || string(req.Timestamp) == "null" {
		if req.Position == "" {
			return to, badReplay("Position is required: TRIM_HORIZON, LATEST or AT_TIMESTAMP.")
		}
		return to, nil
	}
	if to.Type == "" {
		to.Type = esm.ReplayAtTimestamp
	}
	var sec float64
	var text string
	switch {
	case json.Unmarshal(req.Timestamp, &sec) == nil:
		t, err := unixSeconds(sec)
		if err != nil {
			return to, err
		}
		to.Timestamp = t
	case json.Unmarshal(req.Timestamp, &text) == nil:
		t, err := parseTime(text)
		if err != nil {
			return to, err
		}
		to.Timestamp = t
	default:
		return to, badReplay("Timestamp must be Unix seconds or an RFC 3339 time.")
	}
	return to, nil
}

func unixSeconds(sec float64) (time.Time, error) {
	if math.IsNaN(sec) || sec <= 0 || sec > 1e11 {
		return time.Time{}, badReplay("Timestamp %v is not a time in Unix seconds.", sec)
	}
	whole, frac := math.Modf(sec)
	return time.Unix(int64(whole), int64(frac*1e9)), nil
}

// parseTime reads an RFC 3339 time or Unix seconds.
func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if sec, err := strconv.ParseFloat(s, 64); err == nil {
		return unixSeconds(sec)
	}
	return time.Time{}, badReplay("Timestamp %q is neither an RFC 3339 time nor Unix seconds.", s)
}

const replayCmdUsage = `Usage:
  esmd replay [--endpoint URL] [--profile P] [--region R] [--wait 30s] UUID POSITION
        Rewind one mapping of a running 'esmd serve' (esmd's own call,
        POST ` + replayPrefix + `{UUID}` + replaySuffix + `): POSITION is TRIM_HORIZON,
        LATEST, an RFC 3339 time (2026-01-02T15:04:05Z) or Unix seconds.
        Kinesis and DynamoDB Streams restart every shard there, Kafka commits
        the offsets at that time for the consumer group, DocumentDB reopens
        its change stream with startAtOperationTime. Queues (SQS, Amazon MQ)
        refuse: they keep no position. The mapping is Updating until its
        pipeline restarted; --wait waits for that (0: do not wait).
`

// replayCmd runs 'esmd replay'.
func replayCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("esmd replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), replayCmdUsage); fs.PrintDefaults() }
	endpoint := fs.String("endpoint", "http://127.0.0.1:9000", "URL of the running esmd serve's API")
	profile := fs.String("profile", "", "AWS profile whose credentials sign the request (default: the environment's, if any)")
	region := fs.String("region", envOr("us-east-1", "AWS_REGION", "AWS_DEFAULT_REGION"), "region the request is signed for")
	wait := fs.Duration("wait", 30*time.Second, "wait until the mapping left Updating (0: do not wait)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return errUsage
	}
	id, pos := fs.Arg(0), fs.Arg(1)
	req := replayRequest{Position: pos}
	switch pos {
	case esm.ReplayTrimHorizon, esm.ReplayLatest:
	default:
		t, err := parseTime(pos)
		if err != nil {
			fmt.Fprintln(stderr, "esmd replay:", err.(*esm.Error).Message)
			return errUsage
		}
		req.Position = esm.ReplayAtTimestamp
		req.Timestamp, _ = json.Marshal(t.Format(time.RFC3339Nano))
	}
	u, err := url.Parse(strings.TrimSuffix(*endpoint, "/") + replayPrefix + url.PathEscape(id) + replaySuffix)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("--endpoint %q is not an http(s) URL", *endpoint)
	}
	body, _ := json.Marshal(req)
	var out replayResponse
	if err := callEsmd(ctx, http.MethodPost, u.String(), body, *profile, *region, &out); err != nil {
		return fmt.Errorf("replay %s: %w", id, err)
	}
	fmt.Fprintf(stdout, "mapping %s: rewinding to %s (state %s)\n", out.UUID, pos, out.State)
	if *wait <= 0 {
		return nil
	}
	get := strings.TrimSuffix(*endpoint, "/") + "/2015-03-31/event-source-mappings/" + url.PathEscape(id)
	deadline := time.Now().Add(*wait)
	for {
		var m struct{ State, LastProcessingResult string }
		if err := callEsmd(ctx, http.MethodGet, get, nil, *profile, *region, &m); err != nil {
			return fmt.Errorf("replay %s: %w", id, err)
		}
		if m.State != string(esm.StateUpdating) {
			fmt.Fprintf(stdout, "mapping %s: %s; last processing result: %s\n", id, m.State, m.LastProcessingResult)
			if strings.HasPrefix(m.LastProcessingResult, "PROBLEM: replay") {
				return errors.New(m.LastProcessingResult)
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("replay %s: still Updating after %v", id, *wait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// callEsmd makes one call to a running esmd and decodes its JSON answer,
// or returns its error.
func callEsmd(ctx context.Context, method, target string, body []byte, profile, region string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if err := signRequest(ctx, req, body, profile, region); err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return errors.New(refusal(resp))
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	return json.Unmarshal(data, out)
}
