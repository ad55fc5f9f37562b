package esm

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/esmd/esmd/internal/backoff"
)

// Engine holds the mappings, persists them, and runs one pipeline per
// enabled mapping. All methods are safe for concurrent use. Every goroutine
// the engine starts is stopped and awaited by Close.
type Engine struct {
	o options

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// shared is o.store when several engines share it (SharedStore).
	shared SharedStore

	mu       sync.Mutex
	mappings map[string]*entry
	closed   bool
}

type entry struct {
	m   *Mapping
	run *pipeline
	// gen counts the user's (and Disable's) changes; a settle goroutine
	// applies its result only while no newer change was made.
	gen uint64
	// rev is the stored revision en.m was read or written at, with a
	// SharedStore (0 otherwise).
	rev int64
	// before, when set, runs once the pipeline has stopped and before the
	// next settles (Replay's rewind), outside the engine's lock.
	before func(context.Context)
}

type pipeline struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// New creates an engine and loads the stored mappings. Call Start to run
// their pipelines and Close to stop them.
func New(ctx context.Context, opts ...Option) (*Engine, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	e := &Engine{o: o, mappings: map[string]*entry{}}
	e.shared, _ = o.store.(SharedStore)
	e.ctx, e.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if o.store != nil {
		stored, revs, err := e.load(ctx)
		if err != nil {
			return nil, err
		}
		for id, data := range stored {
			var m Mapping
			if err := json.Unmarshal(data, &m); err != nil {
				return nil, fmt.Errorf("esm: stored mapping %s is unreadable: %w", id, err)
			}
			e.mappings[id] = &entry{m: &m, rev: revs[id]}
		}
	}
	return e, nil
}

// Start settles every loaded mapping and starts the pipelines of the
// enabled ones. A mapping stored mid-transition (the process stopped while
// it was Creating, Updating, ...) is settled as the transition would have.
func (e *Engine) Start() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, en := range e.mappings {
		e.settleLocked(en)
	}
	e.watchLocked()
}

// Close stops every pipeline, waiting for them until ctx is done.
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	e.closed = true
	e.mu.Unlock()
	e.cancel()
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("esm: pipelines still stopping: %w", ctx.Err())
	}
}

// Region and Account are the values used to form ARNs.
func (e *Engine) Region() string  { return e.o.region }
func (e *Engine) Account() string { return e.o.account }

// Create validates cfg exactly as CreateEventSourceMapping does and adds the
// mapping. The returned mapping is in state Creating (Disabled when created
// with Enabled=false).
func (e *Engine) Create(ctx context.Context, cfg *Config) (*Mapping, error) {
	if cfg.FunctionName == nil {
		var v violations
		v.add("null", "functionName", "Member must not be null")
		return nil, v.err()
	}
	if err := checkShape(cfg); err != nil {
		return nil, err
	}
	if err := checkTagRules(cfg.Tags); err != nil {
		return nil, err
	}
	var src Source
	var arn string
	switch {
	case cfg.EventSourceArn != nil:
		arn = *cfg.EventSourceArn
		s, ok := DetectSource(arn)
		if !ok {
			return nil, invalidParam("Unrecognized event source.")
		}
		src = s
	case cfg.SelfManagedEventSource != nil:
		src = SourceKafka
	default:
		return nil, invalidParam("Unrecognized event source.")
	}
	if err := checkSource(src, cfg, arn, e.o.maxFilters, e.o.now()); err != nil {
		return nil, err
	}
	if err := e.checkPatterns(src, cfg.FilterCriteria); err != nil {
		return nil, err
	}
	fn, err := e.resolveFunction(ctx, *cfg.FunctionName)
	if err != nil {
		return nil, err
	}
	if r, ok := e.o.runners[src].(AccessChecker); ok {
		if err := r.CheckAccess(ctx, src, cfg); err != nil {
			return nil, err
		}
	}
	if r, ok := e.o.runners[src].(SourceChecker); ok {
		if err := r.CheckSource(ctx, src, cfg); err != nil {
			return nil, err
		}
	}

	id := uuid.NewString()
	eff := cfg.clone()
	applyDefaults(src, &eff, id)
	now := e.o.now()
	m := &Mapping{
		UUID:                  id,
		Arn:                   e.mappingArn(id),
		FunctionArn:           fn.ARN(),
		Source:                src,
		Config:                eff,
		StateTransitionReason: userReason(src),
		LastModified:          now,
		Created:               now,
		Tags:                  cloneTags(cfg.Tags),
	}
	if reportsProcessingResult(src) {
		m.LastProcessingResult = "No records processed"
	}
	m.State = StateCreating
	if !m.Enabled() {
		// Observed for SQS: a mapping created disabled is Disabled at once.
		m.State = StateDisabled
	}

	if e.shared != nil {
		return e.createShared(ctx, m, *cfg.FunctionName)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.addLocked(ctx, m, *cfg.FunctionName)
}

// addLocked adds a new mapping unless it duplicates another.
func (e *Engine) addLocked(ctx context.Context, m *Mapping, fnName string) (*Mapping, error) {
	if e.closed {
		return nil, &Error{Type: ErrTypeService, Status: http.StatusInternalServerError, Message: "esmd is shutting down"}
	}
	if err := e.duplicateLocked(m, fnName, ""); err != nil {
		return nil, err
	}
	id := m.UUID
	en := &entry{m: m}
	if err := e.persist(ctx, en, m); err != nil {
		return nil, err
	}
	e.mappings[id] = en
	out := m.Clone()
	e.settleLocked(en)
	return out, nil
}

// Get returns the mapping with the given UUID.
func (e *Engine) Get(_ context.Context, id string) (*Mapping, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	en, ok := e.mappings[id]
	if !ok {
		return nil, NotFound()
	}
	return en.m.Clone(), nil
}

// ListInput filters and pages ListEventSourceMappings.
type ListInput struct {
	EventSourceArn *string
	FunctionName   *string
	Marker         *string
	MaxItems       *int64
}

// ListPageSize is the most mappings one List page returns, whatever
// MaxItems asks for (spec 2.2).
const ListPageSize = 100

// List returns one page of mappings in creation order, and the marker of the
// next page ("" when there is none).
func (e *Engine) List(_ context.Context, in ListInput) ([]*Mapping, string, error) {
	var c checker
	c.str(in.EventSourceArn, "eventSourceArn", 0, MaxArnLength, reArn, patArn)
	c.str(in.FunctionName, "functionName", 1, 256, functionNameRe, patFunctionName)
	c.intRange(in.MaxItems, "maxItems", 1, 10000)
	if err := c.v.err(); err != nil {
		return nil, "", err
	}
	limit := ListPageSize
	if in.MaxItems != nil && *in.MaxItems < int64(limit) {
		limit = int(*in.MaxItems)
	}
	var after *listKey
	if in.Marker != nil && *in.Marker != "" {
		k, err := decodeMarker(*in.Marker)
		if err != nil {
			return nil, "", invalidParam("Invalid marker: %s", *in.Marker)
		}
		after = &k
	}
	var fnArn string
	if in.FunctionName != nil {
		ref, _ := ParseFunctionName(*in.FunctionName, e.o.region, e.o.account)
		fnArn = ref.ARN()
	}

	e.mu.Lock()
	all := make([]*Mapping, 0, len(e.mappings))
	for _, en := range e.mappings {
		m := en.m
		if in.EventSourceArn != nil && (m.Config.EventSourceArn == nil || *m.Config.EventSourceArn != *in.EventSourceArn) {
			continue
		}
		if fnArn != "" && m.FunctionArn != fnArn {
			continue
		}
		all = append(all, m.Clone())
	}
	e.mu.Unlock()

	sort.Slice(all, func(i, j int) bool { return keyOf(all[i]).less(keyOf(all[j])) })
	start := 0
	if after != nil {
		start = sort.Search(len(all), func(i int) bool { return after.less(keyOf(all[i])) })
	}
	page := all[start:]
	next := ""
	if len(page) > limit {
		page = page[:limit]
		next = encodeMarker(keyOf(page[len(page)-1]))
	}
	return page, next, nil
}

type listKey struct {
	created int64
	id      string
}

func keyOf(m *Mapping) listKey { return listKey{m.Created.UnixNano(), m.UUID} }

func (k listKey) less(o listKey) bool {
	if k.created != o.created {
		return k.created < o.created
	}
	return k.id < o.id
}

func encodeMarker(k listKey) string {
	return base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("%d/%s", k.created, k.id)))
}

func decodeMarker(s string) (listKey, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return listKey{}, err
	}
	var k listKey
	ts, id, ok := strings.Cut(string(b), "/")
	if !ok {
		return k, errors.New("malformed marker")
	}
	if _, err := fmt.Sscan(ts, &k.created); err != nil {
		return k, err
	}
	k.id = id
	return k, nil
}

// update applies a partial UpdateEventSourceMapping. Members that only
// Create accepts are ignored, as AWS ignores members outside the request
// shape.
func (e *Engine) update(ctx context.Context, id string, upd *Config) (*Mapping, error) {
	u := upd.clone()
	u.EventSourceArn, u.StartingPosition, u.StartingPositionTimestamp = nil, nil, nil
	u.Topics, u.Queues, u.SelfManagedEventSource = nil, nil, nil
	if err := checkShape(&u); err != nil {
		return nil, err
	}
	e.mu.Lock()
	en, ok := e.mappings[id]
	var cur *Mapping
	if ok {
		cur = en.m.Clone()
	}
	e.mu.Unlock()
	if !ok {
		return nil, NotFound()
	}
	if cur.State.Transitional() {
		return nil, inUse("Cannot update the event source mapping because it is in use.")
	}
	for _, s := range u.SourceAccessConfigurations {
		if s.Type != nil && *s.Type == "VIRTUAL_HOST" {
			return nil, invalidParam("VIRTUAL_HOST cannot be updated.")
		}
	}
	merged, err := merge(cur, &u)
	if err != nil {
		return nil, err
	}
	arn := ""
	if merged.EventSourceArn != nil {
		arn = *merged.EventSourceArn
	}
	// Presence rules look at what this request sets; cross-field rules at
	// the merged result.
	if err := checkSource(cur.Source, merged, arn, e.o.maxFilters, e.o.now()); err != nil {
		return nil, err
	}
	if u.FilterCriteria != nil {
		if err := e.checkPatterns(cur.Source, u.FilterCriteria); err != nil {
			return nil, err
		}
	}
	if r, ok := e.o.runners[cur.Source].(AccessChecker); ok {
		if err := r.CheckAccess(ctx, cur.Source, merged); err != nil {
			return nil, err
		}
	}
	fnArn := cur.FunctionArn
	if u.FunctionName != nil {
		fn, err := e.resolveFunction(ctx, *u.FunctionName)
		if err != nil {
			return nil, err
		}
		fnArn = fn.ARN()
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	en, ok = e.mappings[id]
	if !ok {
		return nil, NotFound()
	}
	if en.m.State.Transitional() {
		return nil, inUse("Cannot update the event source mapping because it is in use.")
	}
	next := en.m.Clone()
	wasEnabled := next.Enabled()
	next.Config = *merged
	next.FunctionArn = fnArn
	if fnArn != en.m.FunctionArn {
		name := fnArn
		if u.FunctionName != nil {
			name = *u.FunctionName
		}
		if err := e.duplicateLocked(next, name, id); err != nil {
			return nil, err
		}
	}
	switch nowEnabled := next.Enabled(); {
	case nowEnabled && !wasEnabled:
		next.State = StateEnabling
	case !nowEnabled && wasEnabled:
		next.State = StateDisabling
	default:
		next.State = StateUpdating
	}
	next.StateTransitionReason = userReason(next.Source)
	next.LastModified = e.o.now()
	if err := e.persist(ctx, en, next); err != nil {
		return nil, err
	}
	en.m = next
	out := next.Clone()
	e.settleLocked(en)
	return out, nil
}

// merge applies the members present in u to the mapping's configuration.
func merge(cur *Mapping, u *Config) (*Config, error) {
	c := cur.Config.clone()
	set := func(dst **int64, src *int64) {
		if src != nil {
			*dst = src
		}
	}
	if u.Enabled != nil {
		c.Enabled = u.Enabled
	}
	if u.FunctionName != nil {
		c.FunctionName = u.FunctionName
	}
	set(&c.BatchSize, u.BatchSize)
	set(&c.MaximumBatchingWindowInSeconds, u.MaximumBatchingWindowInSeconds)
	set(&c.ParallelizationFactor, u.ParallelizationFactor)
	set(&c.MaximumRecordAgeInSeconds, u.MaximumRecordAgeInSeconds)
	set(&c.MaximumRetryAttempts, u.MaximumRetryAttempts)
	set(&c.TumblingWindowInSeconds, u.TumblingWindowInSeconds)
	if u.BisectBatchOnFunctionError != nil {
		c.BisectBatchOnFunctionError = u.BisectBatchOnFunctionError
	}
	if u.FilterCriteria != nil {
		// FilterCriteria {} (or an empty list) removes filtering (FLT-2).
		c.FilterCriteria = u.FilterCriteria
		if len(u.FilterCriteria.Filters) == 0 {
			c.FilterCriteria = nil
		}
	}
	if u.DestinationConfig != nil {
		c.DestinationConfig = u.DestinationConfig
		if cur.Source.Stream() && c.DestinationConfig.OnFailure == nil {
			c.DestinationConfig.OnFailure = &Destination{}
		}
	}
	if u.FunctionResponseTypes != nil {
		c.FunctionResponseTypes = u.FunctionResponseTypes
	}
	if u.SourceAccessConfigurations != nil {
		c.SourceAccessConfigurations = u.SourceAccessConfigurations
	}
	for _, k := range []struct{ cur, upd **KafkaEventSourceConfig }{
		{&c.AmazonManagedKafkaEventSourceConfig, &u.AmazonManagedKafkaEventSourceConfig},
		{&c.SelfManagedKafkaEventSourceConfig, &u.SelfManagedKafkaEventSourceConfig},
	} {
		upd := *k.upd
		if upd == nil {
			continue
		}
		old := *k.cur
		if upd.ConsumerGroupId != nil && (old == nil || old.ConsumerGroupId == nil || *old.ConsumerGroupId != *upd.ConsumerGroupId) {
			return nil, invalidParam("ConsumerGroupId cannot be updated.")
		}
		nk := old.clone()
		if nk == nil {
			nk = &KafkaEventSourceConfig{}
		}
		if upd.SchemaRegistryConfig != nil {
			nk.SchemaRegistryConfig = upd.SchemaRegistryConfig
		}
		*k.cur = nk
	}
	if u.ScalingConfig != nil {
		// ScalingConfig {} clears the cap.
		c.ScalingConfig = u.ScalingConfig
		if u.ScalingConfig.MaximumConcurrency == nil {
			c.ScalingConfig = nil
		}
	}
	if u.DocumentDBEventSourceConfig != nil {
		d := u.DocumentDBEventSourceConfig
		if c.DocumentDBEventSourceConfig == nil {
			c.DocumentDBEventSourceConfig = &DocumentDBEventSourceConfig{}
		}
		if d.DatabaseName != nil {
			c.DocumentDBEventSourceConfig.DatabaseName = d.DatabaseName
		}
		if d.CollectionName != nil {
			c.DocumentDBEventSourceConfig.CollectionName = d.CollectionName
		}
		if d.FullDocument != nil {
			c.DocumentDBEventSourceConfig.FullDocument = d.FullDocument
		}
	}
	if u.KMSKeyArn != nil {
		c.KMSKeyArn = u.KMSKeyArn
		if *u.KMSKeyArn == "" {
			c.KMSKeyArn = nil
		}
	}
	if u.MetricsConfig != nil {
		c.MetricsConfig = u.MetricsConfig
	}
	if u.LoggingConfig != nil {
		c.LoggingConfig = u.LoggingConfig
	}
	if u.ProvisionedPollerConfig != nil {
		c.ProvisionedPollerConfig = u.ProvisionedPollerConfig
	}
	return &c, nil
}

// remove starts deleting a mapping and returns its last configuration with
// State Deleting. The mapping disappears once its pipeline has stopped.
func (e *Engine) remove(ctx context.Context, id string) (*Mapping, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	en, ok := e.mappings[id]
	if !ok {
		return nil, NotFound()
	}
	if en.m.State.Transitional() {
		return nil, inUse("Cannot delete the event source mapping because it is in use.")
	}
	next := en.m.Clone()
	next.State = StateDeleting
	next.LastModified = e.o.now()
	if err := e.persist(ctx, en, next); err != nil {
		return nil, err
	}
	en.m = next
	out := next.Clone()
	e.settleLocked(en)
	return out, nil
}

// settleLocked drives a mapping out of its transitional state: it stops the
// running pipeline if any, starts a new one when the mapping is enabled, and
// records the final state. It runs in a goroutine owned by the engine.
func (e *Engine) settleLocked(en *entry) {
	e.afterStopLocked(en, func() {
		m := en.m
		next := m.Clone()
		switch {
		case m.State == StateDeleting:
			if err := e.unstore(e.ctx, en); err != nil {
				if errors.Is(err, errStale) {
					e.resettleLocked(en) // another worker changed it meanwhile
					return
				}
				e.o.log.Error("delete mapping", "uuid", m.UUID, "err", err)
				return // stays Deleting; the next start finishes it
			}
			delete(e.mappings, m.UUID)
			return
		case next.Enabled():
			next.State = StateEnabled
			if _, ok := e.o.runners[m.Source]; !ok {
				next.LastProcessingResult = fmt.Sprintf("PROBLEM: this esmd has no poller for %s event sources yet; the mapping is kept and will run once one is available", m.Source)
			}
		default:
			next.State = StateDisabled
		}
		if next.State != m.State || next.LastProcessingResult != m.LastProcessingResult {
			if m.State.Transitional() {
				next.LastModified = e.o.now()
			}
			if err := e.persist(e.ctx, en, next); err != nil {
				if errors.Is(err, errStale) {
					e.resettleLocked(en) // another worker changed it meanwhile
					return
				}
				e.o.log.Error("persist mapping state", "uuid", m.UUID, "err", err)
			}
		}
		en.m = next
		if next.State == StateEnabled {
			if r, ok := e.o.runners[m.Source]; ok {
				en.run = e.startLocked(en, r)
			}
		}
	})
}

// afterStopLocked stops en's pipeline and then, in a goroutine owned by
// the engine and under its lock, runs then, unless a newer change (a
// later afterStopLocked) owns the entry by then.
func (e *Engine) afterStopLocked(en *entry, then func()) {
	if e.closed {
		return
	}
	en.gen++
	gen := en.gen
	old, before := en.run, en.before
	en.run, en.before = nil, nil
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		if old != nil {
			old.cancel()
			<-old.done
		}
		if before != nil {
			before(e.ctx)
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.closed || en.gen != gen {
			return // a newer change owns the entry now
		}
		then()
	}()
}

// startLocked starts the pipeline goroutine of a mapping.
func (e *Engine) startLocked(en *entry, r Runner) *pipeline {
	ctx, cancel := context.WithCancel(e.ctx)
	p := &pipeline{cancel: cancel, done: make(chan struct{})}
	m := en.m.Clone()
	rep := &reporter{e: e, id: m.UUID}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer close(p.done)
		bo := backoff.New(e.o.retryMin, e.o.retryMax)
		for {
			err := r.Run(ctx, m.Clone(), rep)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				err = errors.New("pipeline stopped unexpectedly")
			}
			wait := bo.Next()
			e.o.log.Warn("pipeline failed; restarting", "uuid", m.UUID, "source", m.Source, "err", err, "backoff", wait)
			rep.ProcessingResult("PROBLEM: " + err.Error())
			if backoff.Sleep(ctx, wait) != nil {
				return
			}
		}
	}()
	return p
}

// reporter is the Reporter handed to one run of a pipeline. It writes only
// while the mapping it was created for is still the current one.
type reporter struct {
	e  *Engine
	id string
}

func (r *reporter) ProcessingResult(result string) {
	e := r.e
	e.mu.Lock()
	defer e.mu.Unlock()
	en, ok := e.mappings[r.id]
	if !ok || en.m.LastProcessingResult == result || en.m.State != StateEnabled {
		return
	}
	next := en.m.Clone()
	next.LastProcessingResult = result
	if err := e.persist(e.ctx, en, next); err != nil {
		if errors.Is(err, errStale) {
			return // reloaded: the next result is written over the newer mapping
		}
		e.o.log.Error("persist processing result", "uuid", r.id, "err", err)
	}
	en.m = next
}

func (r *reporter) Disable(reason string) {
	r.e.mu.Lock()
	defer r.e.mu.Unlock()
	r.disableLocked(reason, 1)
}

// disableLocked disables the mapping; a write refused as stale (another
// worker changed the mapping) is applied again, up to retries times, to
// the reloaded mapping if it is still enabled.
func (r *reporter) disableLocked(reason string, retries int) {
	e := r.e
	en, ok := e.mappings[r.id]
	if !ok || en.m.State != StateEnabled {
		return
	}
	next := en.m.Clone()
	next.Config.Enabled = ptr(false)
	next.State = StateDisabling
	next.StateTransitionReason = reason
	next.LastModified = e.o.now()
	if err := e.persist(e.ctx, en, next); err != nil {
		if errors.Is(err, errStale) {
			if retries > 0 {
				r.disableLocked(reason, retries-1)
			}
			return
		}
		e.o.log.Error("persist disable", "uuid", r.id, "err", err)
	}
	en.m = next
	e.settleLocked(en)
}

// persist stores m, the next version of en's mapping. With a SharedStore
// the write is conditional on en.rev: when another worker changed the
// mapping since, en is reloaded and persist returns errStale.
func (e *Engine) persist(ctx context.Context, en *entry, m *Mapping) error {
	if e.o.store == nil {
		return nil
	}
	data, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("esm: encode mapping %s: %w", m.UUID, err)
	}
	if e.shared != nil {
		return e.persistShared(ctx, en, m.UUID, data)
	}
	if err := e.o.store.SaveMapping(ctx, m.UUID, data); err != nil {
		// The store's error names files and paths: log it, answer as AWS.
		e.o.log.Error("save mapping", "uuid", m.UUID, "err", err)
		return serviceError()
	}
	return nil
}

func (e *Engine) mappingArn(id string) string {
	return "arn:" + PartitionForRegion(e.o.region) + ":lambda:" + e.o.region + ":" + e.o.account + ":event-source-mapping:" + id
}

func (e *Engine) resolveFunction(ctx context.Context, name string) (FunctionRef, error) {
	ref, ok := ParseFunctionName(name, e.o.region, e.o.account)
	if !ok {
		// checkShape already refused names outside the pattern.
		return ref, invalidParam("Function does not exist")
	}
	if e.o.functions != nil {
		exists, err := e.o.functions.FunctionExists(ctx, ref.ARN())
		if err != nil {
			// The lookup's error names esmd's Lambda endpoint: it goes to
			// the log, the caller gets AWS's own ServiceException.
			e.o.log.Error("function lookup failed", "function", ref.ARN(), "err", err)
			return ref, serviceError()
		}
		if !exists {
			return ref, invalidParam("Function does not exist")
		}
	}
	return ref, nil
}

func (e *Engine) checkPatterns(src Source, fc *FilterCriteria) error {
	if fc == nil || len(fc.Filters) == 0 || e.o.patterns == nil {
		return nil
	}
	pats := make([]string, len(fc.Filters))
	for i, f := range fc.Filters {
		pats[i] = *f.Pattern
	}
	if err := e.o.patterns(src, pats); err != nil {
		return invalidParam("Invalid filter pattern definition.")
	}
	return nil
}

// duplicateLocked refuses a second mapping of the same source and function
// with AWS's per-source 409 messages. fnName is the FunctionName as the
// caller wrote it; skip is the UUID of the mapping being updated.
func (e *Engine) duplicateLocked(m *Mapping, fnName, skip string) error {
	if err := e.findDuplicateLocked(m, fnName, skip); err != nil {
		err.existing = err.Message[strings.LastIndex(err.Message, " ")+1:]
		return err
	}
	return nil
}

func (e *Engine) findDuplicateLocked(m *Mapping, fnName, skip string) *Error {
	for id, en := range e.mappings {
		o := en.m
		if id == skip || o.Source != m.Source || o.FunctionArn != m.FunctionArn || o.State == StateDeleting {
			continue
		}
		switch m.Source {
		case SourceKafka:
			if !slices.Equal(o.Config.Topics, m.Config.Topics) || !overlap(endpoints(o), endpoints(m)) {
				continue
			}
			return conflict(`An event source mapping with event source ("%s"), function ("%s"), topics ("%s") already exists. Please update or delete the existing mapping with UUID %s`,
				strings.Join(endpoints(m), ","), fnName, strings.Join(m.Config.Topics, ","), id)
		case SourceMSK:
			if *o.Config.EventSourceArn != *m.Config.EventSourceArn || !slices.Equal(o.Config.Topics, m.Config.Topics) {
				continue
			}
			return conflict(`An event source mapping with event source ("%s"), function ("%s"), topics ("%s") already exists. Please update or delete the existing mapping with UUID %s`,
				*m.Config.EventSourceArn, fnName, strings.Join(m.Config.Topics, ","), id)
		case SourceMQ:
			if *o.Config.EventSourceArn != *m.Config.EventSourceArn || !slices.Equal(o.Config.Queues, m.Config.Queues) {
				continue
			}
		default:
			if *o.Config.EventSourceArn != *m.Config.EventSourceArn {
				continue
			}
		}
		if m.Source == SourceSQS {
			return conflict(`An event source mapping with SQS arn (" %s ") and function (" %s ") already exists. Please update or delete the existing mapping with UUID %s`,
				*m.Config.EventSourceArn, fnName, id)
		}
		return conflict(`The event source arn (" %s ") and function (" %s ") provided mapping already exists. Please update or delete the existing mapping with UUID %s`,
			*m.Config.EventSourceArn, fnName, id)
	}
	return nil
}

func endpoints(m *Mapping) []string {
	if m.Config.SelfManagedEventSource == nil {
		return nil
	}
	return m.Config.SelfManagedEventSource.Endpoints["KAFKA_BOOTSTRAP_SERVERS"]
}

func overlap(a, b []string) bool {
	for _, x := range a {
		if slices.Contains(b, x) {
			return true
		}
	}
	return false
}

func cloneTags(t map[string]string) map[string]string {
	if len(t) == 0 {
		return nil
	}
	out := make(map[string]string, len(t))
	for k, v := range t {
		out[k] = v
	}
	return out
}

// patResource is the resource pattern AWS prints for tagging calls.
const patResource = `arn:(aws[a-zA-Z-]*):lambda:(eusc-)?[a-z]{2}((-gov)|(-iso([a-z]?)))?-[a-z]+-\d{1}:\d{12}:(function:[a-zA-Z0-9-_]+(:(\$LATEST|[a-zA-Z0-9-_]+))?|layer:([a-zA-Z0-9-_]+)|code-signing-config:csc-[a-z0-9]{17}|event-source-mapping:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}|capacity-provider:[a-zA-Z0-9-_]+)`

var reResource = fullMatch(patResource)

// maxResourceLength is TaggableResource's length limit (1-256).
const maxResourceLength = 256

// resource checks a tagging call's resource ARN (TaggableResource).
func (c *checker) resource(arn string) {
	c.str(&arn, "resource", 1, maxResourceLength, reResource, patResource)
}

// entryByArnLocked finds the mapping a resource ARN names, with AWS's
// ValidationException for a malformed ARN and its 404 wording.
func (e *Engine) entryByArnLocked(arn string) (*entry, error) {
	var c checker
	c.resource(arn)
	if err := c.v.err(); err != nil {
		return nil, err
	}
	return e.entryLocked(arn)
}

// entryLocked finds the mapping of a resource ARN that passed the shape
// check.
func (e *Engine) entryLocked(arn string) (*entry, error) {
	a, _ := ParseARN(arn) // an ARN: it matched reResource
	id, ok := strings.CutPrefix(a.Resource, "event-source-mapping:")
	if !ok {
		return nil, &Error{Type: ErrTypeResourceNotFound, Status: http.StatusNotFound, Message: "Function not found: " + arn}
	}
	en, ok := e.mappings[id]
	if !ok || en.m.Arn != arn {
		return nil, &Error{Type: ErrTypeResourceNotFound, Status: http.StatusNotFound, Message: "Event source mapping not found: " + arn}
	}
	return en, nil
}

// tagResource adds or replaces tags on a mapping ARN (TagResource).
func (e *Engine) tagResource(ctx context.Context, arn string, tags map[string]string) error {
	var c checker
	c.resource(arn)
	if tags == nil {
		c.v.add("null", "tags", "Member must not be null")
	}
	c.tags(tags, "tags")
	if err := c.v.err(); err != nil {
		return err
	}
	if len(tags) == 0 {
		// Lambda's answer to TagResource with {} (LocalStack parity tests).
		return invalidParam("An error occurred and the request cannot be processed.")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	en, err := e.entryLocked(arn)
	if err != nil {
		return err
	}
	next := en.m.Clone()
	if next.Tags == nil {
		next.Tags = map[string]string{}
	}
	for k, v := range tags {
		next.Tags[k] = v
	}
	if err := checkTagRules(next.Tags); err != nil {
		return err
	}
	if err := e.persist(ctx, en, next); err != nil {
		return err
	}
	en.m = next
	return nil
}

// untagResource removes tags (UntagResource).
func (e *Engine) untagResource(ctx context.Context, arn string, keys []string) error {
	var c checker
	c.resource(arn)
	if len(keys) == 0 {
		c.v.add("null", "tagKeys", "Member must not be null")
	}
	if err := c.v.err(); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	en, err := e.entryLocked(arn)
	if err != nil {
		return err
	}
	next := en.m.Clone()
	for _, k := range keys {
		delete(next.Tags, k)
	}
	if err := e.persist(ctx, en, next); err != nil {
		return err
	}
	en.m = next
	return nil
}

// ListTags returns a mapping's tags (an empty map when it has none).
func (e *Engine) ListTags(_ context.Context, arn string) (map[string]string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	en, err := e.entryByArnLocked(arn)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for k, v := range en.m.Tags {
		out[k] = v
	}
	return out, nil
}

// Declare makes the engine hold the mapping cfg describes, as a standalone
// worker's mappings file declares it: when a mapping of the same source and
// function already exists (the identity AWS's 409 uses) it is updated to
// cfg; otherwise it is created. created reports which happened.
func (e *Engine) Declare(ctx context.Context, cfg *Config) (m *Mapping, created bool, err error) {
	m, err = e.Create(ctx, cfg)
	var ae *Error
	if err == nil || !errors.As(err, &ae) || ae.Type != ErrTypeResourceConflict {
		return m, err == nil, err
	}
	id := ae.existing
	if err := e.waitSettled(ctx, id); err != nil {
		return nil, false, err
	}
	m, err = e.Update(ctx, id, cfg)
	return m, false, err
}

// waitSettled waits until a mapping is out of its transitional state.
func (e *Engine) waitSettled(ctx context.Context, id string) error {
	for {
		m, err := e.Get(ctx, id)
		if err != nil {
			return err
		}
		if !m.State.Transitional() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}
