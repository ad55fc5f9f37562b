package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/esmd/esmd/checkpoint"
	"github.com/esmd/esmd/checkpoint/pgstore"
	"github.com/esmd/esmd/esm"
)

// storeBackupPath is esmd's own endpoint (not part of the AWS API) that
// streams a consistent copy of the store of a running esmd serve.
const storeBackupPath = "/esmd/store/backup"

const storeCmdUsage = `Usage:
  esmd store check [--data-dir DIR | --store FILE]
        Verify a store that no esmd is running on: every page bbolt reads,
        bbolt's own consistency check, every value's checksum, and every
        mapping decoded as esmd decodes it. Exit status 0 when sound, 1 when
        not, with what was found.
  esmd store backup [--endpoint URL [--profile P] [--region R] | --data-dir DIR | --store FILE] FILE
        Write a consistent copy of a store to FILE (a temporary file beside
        it, synced and verified, then renamed). With --endpoint, the copy
        comes from a running 'esmd serve' (GET ` + storeBackupPath + `, an endpoint
        of esmd's own, behind the API's authentication: the request is signed
        with SigV4 when AWS credentials are set, in the environment or by
        --profile, as a serve with --api-credentials requires); without it,
        from a store no esmd is running on. To restore, stop esmd and copy
        FILE to DIR/` + checkpoint.FileName + `.
`

// storeCmd runs 'esmd store check' and 'esmd store backup'.
func storeCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, storeCmdUsage)
		return errUsage
	}
	switch args[0] {
	case "check":
		return storeCheckCmd(ctx, args[1:], stdout, stderr)
	case "backup":
		return storeBackupCmd(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help", "-help":
		fmt.Fprint(stdout, storeCmdUsage)
		return nil
	default:
		fmt.Fprintf(stderr, "esmd store: unknown command %q\n\n%s", args[0], storeCmdUsage)
		return errUsage
	}
}

// storeFlags are the flags that name a store file.
type storeFlags struct {
	fs      *flag.FlagSet
	dataDir string
	file    string
}

func newStoreFlags(name string, out io.Writer) *storeFlags {
	f := &storeFlags{fs: flag.NewFlagSet(name, flag.ContinueOnError)}
	f.fs.SetOutput(out)
	f.fs.StringVar(&f.dataDir, "data-dir", defaultDataDir(), "data directory whose store ("+checkpoint.FileName+") to use")
	f.fs.StringVar(&f.file, "store", "", "embedded store file to use (instead of --data-dir)")
	return f
}

func (f *storeFlags) path() string {
	if f.file != "" {
		return f.file
	}
	return filepath.Join(f.dataDir, checkpoint.FileName)
}

// open opens the store read-only, explaining ErrInUse.
func (f *storeFlags) open() (*checkpoint.Store, error) {
	if pgstore.IsURL(f.file) {
		return nil, fmt.Errorf("--store %s: esmd store check and backup are for the embedded store; back PostgreSQL up with pg_dump", pgstore.Redact(f.file))
	}
	s, err := checkpoint.OpenReadOnly(f.path())
	if errors.Is(err, checkpoint.ErrInUse) {
		return nil, fmt.Errorf("%w: a running esmd holds it; back it up through that esmd with 'esmd store backup --endpoint URL FILE' and check the copy", err)
	}
	return s, err
}

func storeCheckCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newStoreFlags("esmd store check", stderr)
	if err := parse(f.fs, args); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	path := f.path()
	s, err := f.open()
	var damaged *checkpoint.DamageError
	if errors.As(err, &damaged) {
		fmt.Fprintf(stdout, "%s: NOT SOUND\n  problem: %s\n", path, damaged.Reason)
	}
	if err != nil {
		return err
	}
	defer s.Close()
	problems, report := checkStore(ctx, s)
	ver := s.Verification()
	if len(problems) > 0 {
		fmt.Fprintf(stdout, "%s: NOT SOUND\n", path)
	} else {
		fmt.Fprintf(stdout, "%s: sound\n", path)
	}
	fmt.Fprintf(stdout, "  bbolt: page size %d, %d pages (%d free), transaction %d\n", ver.PageSize, ver.Pages, ver.FreePages, ver.Txid)
	for _, r := range report {
		fmt.Fprintf(stdout, "  %s\n", r)
	}
	for _, n := range ver.Notes {
		fmt.Fprintf(stdout, "  note: %s\n", n)
	}
	for _, p := range problems {
		fmt.Fprintf(stdout, "  problem: %s\n", p)
	}
	if len(problems) > 0 {
		return fmt.Errorf("store %s: %d problems", path, len(problems))
	}
	return nil
}

// checkStore runs every check on an open store past those Open runs: bbolt's
// own consistency check, and each record decoded as esmd reads it.
func checkStore(ctx context.Context, s *checkpoint.Store) (problems, report []string) {
	if err := s.Check(ctx); err != nil {
		problems = append(problems, err.Error())
	}
	ms, err := s.LoadMappings(ctx)
	if err != nil {
		return append(problems, err.Error()), report
	}
	for id, data := range ms {
		// As esm.New reads them when esmd starts.
		var m esm.Mapping
		if err := json.Unmarshal(data, &m); err != nil {
			problems = append(problems, fmt.Sprintf("mapping %s: %v", id, err))
		} else if m.UUID != id {
			problems = append(problems, fmt.Sprintf("mapping %s: stored under another UUID (%q)", id, m.UUID))
		}
	}
	lanes, orphans := 0, map[string]bool{}
	err = s.AllPositions(ctx, func(mapping, _, _ string) error {
		lanes++
		if ms[mapping] == nil {
			orphans[mapping] = true
		}
		return nil
	})
	if err != nil {
		problems = append(problems, err.Error())
	}
	report = append(report, fmt.Sprintf("%d mappings, %d positions", len(ms), lanes))
	for m := range orphans {
		report = append(report, fmt.Sprintf("note: positions of mapping %s, which is not stored (they are unused)", m))
	}
	return problems, report
}

func storeBackupCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newStoreFlags("esmd store backup", stderr)
	var endpoint, profile, region string
	f.fs.StringVar(&endpoint, "endpoint", "", "URL of a running esmd serve (its --addr), to back up the store it holds")
	f.fs.StringVar(&profile, "profile", "", "AWS profile whose credentials sign the request to --endpoint (default: the SDK's credentials from the environment, when set)")
	f.fs.StringVar(&region, "region", envOr("us-east-1", "AWS_REGION", "AWS_DEFAULT_REGION"), "region the request to --endpoint is signed for")
	if err := f.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	if f.fs.NArg() != 1 {
		fmt.Fprintln(stderr, "esmd store backup: name one FILE to write the copy to")
		return errUsage
	}
	dst := f.fs.Arg(0)
	var write func(io.Writer) error
	if endpoint != "" {
		write = func(w io.Writer) error { return fetchBackup(ctx, endpoint, profile, region, w) }
	} else {
		src, err := filepath.Abs(f.path())
		if err != nil {
			return err
		}
		if abs, _ := filepath.Abs(dst); abs == src {
			return fmt.Errorf("the copy would overwrite the store %s itself", src)
		}
		s, err := f.open()
		if err != nil {
			if errors.Is(err, checkpoint.ErrInUse) {
				return fmt.Errorf("%w (or pass --endpoint to back up through it)", err)
			}
			return err
		}
		defer s.Close()
		write = func(w io.Writer) error { _, err := s.Backup(w, nil); return err }
	}
	ver, err := checkpoint.WriteFile(dst, write)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: %d bytes, transaction %d\n", dst, int64(ver.Pages)*int64(ver.PageSize), ver.Txid)
	return nil
}

// fetchBackup streams the store of the esmd serving at endpoint into w.
func fetchBackup(ctx context.Context, endpoint, profile, region string, w io.Writer) error {
	u, err := url.Parse(strings.TrimRight(endpoint, "/") + storeBackupPath)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--endpoint %q is not an http(s) URL", endpoint)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	if err := signRequest(ctx, req, nil, profile, region); err != nil {
		return err
	}
	// No overall timeout: a large store takes as long as it takes. The
	// connection and the answer's headers are bounded.
	client := &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		ResponseHeaderTimeout: 30 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
	}}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("back up through %s: %w", endpoint, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("back up through %s: %s", endpoint, refusal(resp))
	}
	n, err := io.Copy(w, resp.Body)
	if err != nil {
		return fmt.Errorf("back up through %s: %w", endpoint, err)
	}
	if resp.ContentLength >= 0 && n != resp.ContentLength {
		return fmt.Errorf("back up through %s: %d of %d bytes received", endpoint, n, resp.ContentLength)
	}
	return nil
}

// refusal describes an answer other than 200: the status, and the error
// type and first line of the message of an API error (AWS's JSON shape).
func refusal(resp *http.Response) string {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
	var e struct {
		Type    string `json:"__type"`
		Message string `json:"message"`
	}
	msg := strings.TrimSpace(string(body))
	if json.Unmarshal(body, &e) == nil && e.Message != "" {
		msg = e.Message
	}
	msg, _, _ = strings.Cut(msg, "\n")
	typ := resp.Header.Get("X-Amzn-Errortype")
	if typ == "" {
		typ = e.Type
	}
	if typ, _, _ = strings.Cut(typ, ":"); typ != "" {
		msg = typ + ": " + msg
	}
	return resp.Status + ": " + msg
}

// signRequest signs req, whose body is body, with SigV4 (service lambda,
// as the API's requests are) when credentials are configured: a --profile,
// or AWS credentials in the environment. Otherwise the request goes
// unsigned, as an esmd without API credentials accepts.
func signRequest(ctx context.Context, req *http.Request, body []byte, profile, region string) error {
	if profile == "" && os.Getenv("AWS_ACCESS_KEY_ID") == "" && os.Getenv("AWS_PROFILE") == "" {
		return nil
	}
	opts := []func(*config.LoadOptions) error{config.WithRegion(region)}
	if profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(profile))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return fmt.Errorf("load AWS credentials: %w", err)
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return fmt.Errorf("load AWS credentials: %w", err)
	}
	sum := sha256.Sum256(body)
	return v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "lambda", cfg.Region, time.Now())
}

// backupStore is a store that can copy itself while in use: the embedded
// store (checkpoint.Store).
type backupStore interface {
	Backup(w io.Writer, size func(int64)) (int64, error)
	Path() string
}

// withStoreBackup serves GET /esmd/store/backup (esmd's own endpoint, not
// AWS's): a consistent copy of the embedded store. It is mounted beside the
// API so that it sits behind whatever guards the API. A PostgreSQL store
// is backed up with PostgreSQL's tools instead.
//
// The copy is taken from one read transaction into an unlinked temporary
// file beside the store, and only then sent: a read transaction held open
// by a slow client would stop bbolt from growing the file (its remap waits
// for every reader), and so stall every checkpoint. One backup runs at a
// time; another meanwhile is refused with 503.
func withStoreBackup(next http.Handler, store any, log *slog.Logger) http.Handler {
	busy := make(chan struct{}, 1)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != storeBackupPath {
			next.ServeHTTP(w, r)
			return
		}
		s, ok := store.(backupStore)
		if !ok {
			http.Error(w, "this esmd keeps its state in PostgreSQL: back it up with pg_dump", http.StatusNotImplemented)
			return
		}
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", http.MethodGet)
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		select {
		case busy <- struct{}{}:
			defer func() { <-busy }()
		default:
			w.Header().Set("Retry-After", "10")
			http.Error(w, "a backup is already running", http.StatusServiceUnavailable)
			return
		}
		f, size, err := snapshot(s)
		if err != nil {
			log.Error("store backup", "err", err)
			http.Error(w, "the store could not be copied: see esmd's log", http.StatusInternalServerError)
			return
		}
		defer f.Close()
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", `attachment; filename="`+checkpoint.FileName+`"`)
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		w.Header().Set("Cache-Control", "no-store")
		if err := sendCopy(w, f); err != nil {
			log.Warn("store backup: sending the copy", "err", err)
			// Cut the connection, so that the client sees a short body.
			panic(http.ErrAbortHandler)
		}
	})
}

// sendCopy writes f to w in chunks, moving the connection's write deadline
// on with each: a copy larger than the server's WriteTimeout can carry
// still goes out while the client keeps reading, and a client that stops
// reading is cut after backupChunkTimeout.
func sendCopy(w http.ResponseWriter, f io.Reader) error {
	rc := http.NewResponseController(w)
	buf := make([]byte, 1<<20)
	for {
		n, rerr := f.Read(buf)
		if n > 0 {
			if err := rc.SetWriteDeadline(time.Now().Add(backupChunkTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
				return err
			}
			if _, err := w.Write(buf[:n]); err != nil {
				return err
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// backupChunkTimeout bounds the sending of each MiB of a backup.
const backupChunkTimeout = 30 * time.Second

// snapshot copies the store into an unlinked temporary file beside it,
// returned at offset 0 with its size.
func snapshot(s backupStore) (*os.File, int64, error) {
	f, err := os.CreateTemp(filepath.Dir(s.Path()), ".esmd-backup-*")
	if err != nil {
		return nil, 0, err
	}
	os.Remove(f.Name()) // the open file stays readable; nothing is left behind
	n, err := s.Backup(f, nil)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, n, nil
}
