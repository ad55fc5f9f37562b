package esm

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"reflect"
)

// SharedStore is a Store that several engines share: esmd workers on one
// PostgreSQL database (pgstore.Store implements it). With one, the engine
//
//   - writes a mapping only over the revision it last read, so no worker
//     overwrites a change it has not seen (a stale write reloads the
//     mapping and the change is applied again to the newer one);
//   - watches the store's change notifications and applies every other
//     worker's change to its own copy, within milliseconds: the API of any
//     worker lists and reads every mapping, and a mapping's pipeline runs,
//     restarts with a new configuration, or stops on every worker.
//
// The worker that made a change settles it (Creating to Enabled, Disabling
// to Disabled, Deleting to gone), as a single engine does; the others only
// start, restart or stop their own pipeline of the mapping. A mapping left
// mid-transition by a worker that died is settled by the next engine that
// starts.
type SharedStore interface {
	Store
	// LoadMappingRevisions returns every mapping and its revision.
	LoadMappingRevisions(ctx context.Context) (data map[string][]byte, revs map[string]int64, err error)
	// LoadMapping returns one mapping and its revision; rev is 0 when it
	// is not stored.
	LoadMapping(ctx context.Context, uuid string) (data []byte, rev int64, err error)
	// SaveMappingIf writes a mapping if its stored revision is rev (0: not
	// stored yet); ok is false when it is another.
	SaveMappingIf(ctx context.Context, uuid string, data []byte, rev int64) (newRev int64, ok bool, err error)
	// DeleteMappingIf deletes a mapping if its stored revision is rev.
	DeleteMappingIf(ctx context.Context, uuid string, rev int64) (ok bool, err error)
	// Watch calls changed with the UUID of every mapping written or
	// deleted, by any engine, until ctx is done; "" means that anything
	// may have changed (notifications were lost).
	Watch(ctx context.Context, log *slog.Logger, changed func(uuid string)) error
	// Exclusive runs fn while no other engine runs an Exclusive fn.
	Exclusive(ctx context.Context, fn func() error) error
}

// errStale is persist's answer when another worker changed the mapping
// since this engine read it; the entry has been reloaded.
var errStale = errors.New("esm: the stored mapping changed")

// staleRetries bounds how often an operation is applied again to a
// mapping other workers keep changing.
const staleRetries = 5

// retryStale runs op again while it fails with errStale (op's persist has
// reloaded the mapping by then).
func retryStale[T any](op func() (T, error)) (T, error) {
	for i := 0; ; i++ {
		v, err := op()
		if !errors.Is(err, errStale) {
			return v, err
		}
		if i == staleRetries {
			// Other workers changed the mapping every time: answer as
			// Lambda does for a fault of its own.
			return v, serviceError()
		}
	}
}

// Update applies a partial UpdateEventSourceMapping. Members that only
// Create accepts are ignored, as AWS ignores members outside the request
// shape.
func (e *Engine) Update(ctx context.Context, id string, upd *Config) (*Mapping, error) {
	return retryStale(func() (*Mapping, error) { return e.update(ctx, id, upd) })
}

// Delete starts deleting a mapping and returns its last configuration with
// State Deleting. The mapping disappears once its pipeline has stopped.
func (e *Engine) Delete(ctx context.Context, id string) (*Mapping, error) {
	return retryStale(func() (*Mapping, error) { return e.remove(ctx, id) })
}

// TagResource adds or replaces tags on a mapping ARN. The checks run in
// AWS's order: the shape of the resource and of the tags (one
// ValidationException), an empty map, the mapping's existence, then the
// tag rules on the tags the mapping would carry.
func (e *Engine) TagResource(ctx context.Context, arn string, tags map[string]string) error {
	_, err := retryStale(func() (struct{}, error) { return struct{}{}, e.tagResource(ctx, arn, tags) })
	return err
}

// UntagResource removes tags; keys that are not set are ignored. TagKeys
// is required: none at all is refused as AWS refuses a missing member.
func (e *Engine) UntagResource(ctx context.Context, arn string, keys []string) error {
	_, err := retryStale(func() (struct{}, error) { return struct{}{}, e.untagResource(ctx, arn, keys) })
	return err
}

// createShared adds a new mapping with a SharedStore: under the store's
// exclusive lock, after reading every mapping, so that two workers asked
// at once for the same source and function do not both create one (the
// second gets the 409 a single engine gives).
func (e *Engine) createShared(ctx context.Context, m *Mapping, fnName string) (out *Mapping, err error) {
	xerr := e.shared.Exclusive(ctx, func() error {
		e.mu.Lock()
		defer e.mu.Unlock()
		if !e.closed {
			if err := e.reloadAllLocked(ctx); err != nil {
				return err
			}
		}
		out, err = e.addLocked(ctx, m, fnName)
		return nil
	})
	if xerr != nil {
		e.o.log.Error("create mapping", "uuid", m.UUID, "err", xerr)
		return nil, serviceError()
	}
	return out, err
}

// load reads every stored mapping, with revisions when the store is
// shared.
func (e *Engine) load(ctx context.Context) (map[string][]byte, map[string]int64, error) {
	if e.shared != nil {
		return e.shared.LoadMappingRevisions(ctx)
	}
	data, err := e.o.store.LoadMappings(ctx)
	return data, nil, err
}

// persistShared writes en's next mapping over en.rev.
func (e *Engine) persistShared(ctx context.Context, en *entry, id string, data []byte) error {
	rev, ok, err := e.shared.SaveMappingIf(ctx, id, data, en.rev)
	if err != nil {
		// The store's error names the database: log it, answer as AWS.
		e.o.log.Error("save mapping", "uuid", id, "err", err)
		return serviceError()
	}
	if !ok {
		e.reloadLocked(ctx, id)
		return errStale
	}
	en.rev = rev
	return nil
}

// unstore deletes en's mapping from the store (over en.rev when shared).
func (e *Engine) unstore(ctx context.Context, en *entry) error {
	switch {
	case e.o.store == nil:
		return nil
	case e.shared == nil:
		return e.o.store.DeleteMapping(ctx, en.m.UUID)
	}
	ok, err := e.shared.DeleteMappingIf(ctx, en.m.UUID, en.rev)
	if err != nil {
		return err
	}
	if !ok {
		e.reloadLocked(ctx, en.m.UUID)
		return errStale
	}
	return nil
}

// resettleLocked settles en again after its final state could not be
// written because another worker changed the mapping (persist reloaded
// it): when the newer version is transitional too, this engine settles it.
func (e *Engine) resettleLocked(en *entry) {
	if e.mappings[en.m.UUID] == en && en.m.State.Transitional() {
		e.settleLocked(en)
	}
}

// watchLocked starts the goroutine that applies other workers' changes.
func (e *Engine) watchLocked() {
	if e.shared == nil || e.closed {
		return
	}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		_ = e.shared.Watch(e.ctx, e.o.log, e.changed)
	}()
}

// changed applies a change notification: one mapping, or all of them.
func (e *Engine) changed(id string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	if id != "" {
		e.reloadLocked(e.ctx, id)
		return
	}
	if err := e.reloadAllLocked(e.ctx); err != nil {
		e.o.log.Error("reload mappings", "err", err)
	}
}

// reloadAllLocked reads every mapping from the shared store and applies
// what changed.
func (e *Engine) reloadAllLocked(ctx context.Context) error {
	data, revs, err := e.shared.LoadMappingRevisions(ctx)
	if err != nil {
		return err
	}
	for id := range e.mappings {
		if _, ok := revs[id]; !ok {
			e.applyLocked(id, nil, 0)
		}
	}
	for id, d := range data {
		e.applyLocked(id, d, revs[id])
	}
	return nil
}

// reloadLocked reads one mapping from the shared store and applies it.
func (e *Engine) reloadLocked(ctx context.Context, id string) {
	data, rev, err := e.shared.LoadMapping(ctx, id)
	if err != nil {
		e.o.log.Error("reload mapping", "uuid", id, "err", err)
		return
	}
	e.applyLocked(id, data, rev)
}

// applyLocked makes the engine's copy of a mapping the stored one (rev 0:
// deleted) when it is newer, and starts, restarts or stops the mapping's
// pipeline on this worker when what it runs changed.
func (e *Engine) applyLocked(id string, data []byte, rev int64) {
	en := e.mappings[id]
	if rev == 0 {
		if en != nil {
			delete(e.mappings, id)
			e.restartLocked(en)
		}
		return
	}
	if en != nil && en.rev >= rev {
		return // this engine's own write, or older than what it has
	}
	var m Mapping
	if err := json.Unmarshal(data, &m); err != nil {
		e.o.log.Error("stored mapping is unreadable", "uuid", id, "err", err)
		return
	}
	if en == nil {
		en = &entry{m: &m, rev: rev}
		e.mappings[id] = en
		e.restartLocked(en)
		return
	}
	old := en.m
	en.m, en.rev = &m, rev
	if runs(old) != runs(&m) || old.FunctionArn != m.FunctionArn || !reflect.DeepEqual(old.Config, m.Config) {
		e.restartLocked(en)
	}
}

// runs reports whether a mapping's pipeline runs: enabled, and not being
// disabled or deleted.
func runs(m *Mapping) bool {
	switch m.State {
	case StateDisabling, StateDisabled, StateDeleting:
		return false
	}
	return m.Enabled()
}

// restartLocked stops en's pipeline on this worker and, when en is still
// the engine's and runs, starts it again with en's mapping. Unlike
// settleLocked it writes nothing: the worker that made the change settles
// it.
func (e *Engine) restartLocked(en *entry) {
	e.afterStopLocked(en, func() {
		if e.mappings[en.m.UUID] != en || !runs(en.m) {
			return
		}
		if r, ok := e.o.runners[en.m.Source]; ok {
			en.run = e.startLocked(en, r)
		}
	})
}
