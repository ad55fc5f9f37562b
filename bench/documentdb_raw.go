package bench

import (
	"context"
	"os"
	"path/filepath"
	"sync"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/esmd/esmd/payload"
)

// rawDocumentDB is the plain mongo-driver loop: a change stream on the
// collection from the round's start collects up to BatchSize events (what
// the driver holds already; with a window, more until it passes), invokes
// them as one DocumentDB event (each change as relaxed extended JSON, as
// esmd writes it), and checkpoints the resume token, written to a file
// every 100 ms.
func rawDocumentDB(ctx context.Context, s *RawSpec, inv *rawInvoker) error {
	cl, err := mongo.Connect(options.Client().ApplyURI(s.Endpoints[0]))
	if err != nil {
		return err
	}
	defer func() { _ = cl.Disconnect(context.WithoutCancel(ctx)) }()
	ts := bson.Timestamp{T: uint32(s.Since.Unix())}
	cs, err := cl.Database(docdbDatabase).Collection(s.Name).Watch(ctx, mongo.Pipeline{},
		options.ChangeStream().SetStartAtOperationTime(&ts).SetBatchSize(int32(s.BatchSize)))
	if err != nil {
		return err
	}
	defer func() { _ = cs.Close(context.WithoutCancel(ctx)) }()
	ck := &checkpoints{pos: map[string]string{}}
	dir, err := os.MkdirTemp("", "esmd-bench-raw-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ck.run(cctx, filepath.Join(dir, "checkpoints.json"))
	}()
	defer func() { cancel(); wg.Wait() }()
	env := payload.DocumentDB(s.Arn)
	var ev []byte
	for cs.Next(ctx) {
		ev = append(ev[:0], env.Head...)
		deadline := timeAfter(s.Window)
		for n := 0; ; {
			js, err := bson.MarshalExtJSON(cs.Current, false, false)
			if err != nil {
				return err
			}
			if n > 0 {
				ev = append(ev, ',')
			}
			n++
			ev = payload.AppendDocumentDB(ev, js)
			if n >= s.BatchSize {
				break
			}
			if cs.RemainingBatchLength() == 0 && (s.Window == 0 || deadline.passed()) {
				break
			}
			if !cs.TryNext(ctx) {
				break
			}
		}
		ev = append(ev, env.Tail...)
		if err := inv.Invoke(ctx, ev); err != nil {
			return err
		}
		ck.set("resume", string(cs.ResumeToken()))
	}
	if err := cs.Err(); err != nil && ctx.Err() == nil {
		return err
	}
	return ctx.Err()
}
