package workers

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/ragway/ragway/gateway/config"
	"github.com/ragway/ragway/gateway/metrics"
	sdk "github.com/ragway/ragway/plugin-sdk"
)

// pool is one model's replicas and its dispatch queue.
type pool struct {
	model       config.Model
	launch      LaunchFunc
	backoff     Backoff
	loadTimeout time.Duration
	log         *slog.Logger
	metrics     *metrics.Metrics
	created     time.Time
	// quarantine holds the keys of this model's poison requests.
	quarantine *quarantine

	ctx    context.Context    // the supervisors'
	cancel context.CancelFunc // stops the supervisors
	wg     sync.WaitGroup     // supervisors

	mu       sync.Mutex
	replicas []*replica
	waiters  []*waiter // FIFO
	next     int       // round-robin start for ties
	closing  bool
	// retiring: replaced or removed; new requests go elsewhere (errRetired), the
	// ones it has finish, then its processes stop.
	retiring bool
	// named: the pool serves its model's name (not a new version starting, nor an
	// old one draining): its queue is the model's queue-depth metric.
	named         bool
	contextLength int
	// maxInputTokens is what the last replica loaded reported (embedding
	// models: the most tokens per input; 0 unknown).
	maxInputTokens int
	// capabilities are what the last replica loaded said its plugin can do (nil
	// until one loaded).
	capabilities []sdk.Capability
	changed      chan struct{} // closed and replaced on every release/state change
}

// waiter is a request queued for a replica.
type waiter struct {
	ch       chan grant // receives the slot granted to it
	err      error      // set with ch closed when the wait failed
	isolated bool       // wants a replica to itself
	prefixes []prefix   // the request's beginnings (affinity)
}

// grant is a reserved slot: the replica and the process it had when the
// slot was taken (the replica's process may change after that).
type grant struct {
	r    *replica
	proc Process
	// isolated: the replica is the request's alone until it is released.
	isolated bool
}

// isolation says whether a replica serves an isolated request.
type isolation int

const (
	isolationNone     isolation = iota
	isolationReserved           // draining for an isolated request: no new ordinary requests
	isolationHeld               // serving one isolated request, alone
)

func newPool(m config.Model, launch LaunchFunc, b Backoff, loadTimeout time.Duration, log *slog.Logger, met *metrics.Metrics) *pool {
	p := &pool{
		model: m, launch: launch, backoff: b, loadTimeout: loadTimeout,
		log: log.With("model", m.Name), metrics: met, created: time.Now(),
		changed: make(chan struct{}),
	}
	for _, s := range AllStates {
		// Every series exists from the start; another pool of the same name (a
		// version being replaced) keeps its counts.
		met.ReplicaStates.WithLabelValues(m.Name, string(s)).Add(0)
	}
	for range m.Replicas {
		p.replicas = append(p.replicas, p.newReplicaLocked())
	}
	return p
}

// newReplicaLocked returns a new replica of p, starting, with the next free id.
func (p *pool) newReplicaLocked() *replica {
	id := 0
	for _, r := range p.replicas {
		id = max(id, r.id+1)
	}
	p.metrics.ReplicaStates.WithLabelValues(p.model.Name, string(StateStarting)).Inc()
	return &replica{id: id, pool: p, state: StateStarting, since: time.Now(), wake: make(chan struct{}, 1)}
}

// start runs one supervisor per replica.
func (p *pool) start() {
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.replicas {
		p.superviseLocked(r)
	}
}

// superviseLocked runs r's supervisor until r or p is stopped.
func (p *pool) superviseLocked(r *replica) {
	ctx, cancel := context.WithCancel(p.ctx)
	r.cancel = cancel
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer cancel()
		r.supervise(ctx)
	}()
}

// queueGaugeLocked sets the model's queue-depth metric to p's queue, when p is the
// pool serving the model's name.
func (p *pool) queueGaugeLocked() {
	if p.named {
		p.metrics.QueueDepth.WithLabelValues(p.model.Name).Set(float64(len(p.waiters)))
	}
}

// setNamed makes p the pool serving its model's name (for the queue metric).
func (p *pool) setNamed() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.named = true
	p.queueGaugeLocked()
}

// broadcastLocked wakes everyone watching p.changed. Caller holds p.mu.
func (p *pool) broadcastLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *pool) state(r *replica) State {
	p.mu.Lock()
	defer p.mu.Unlock()
	return r.state
}

// setState moves r to s (err, when non-nil, becomes its last error) and
// hands free capacity to queued requests.
func (p *pool) setState(r *replica, s State, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setStateLocked(r, s, err)
}

func (p *pool) setStateLocked(r *replica, s State, err error) {
	if err != nil {
		r.lastErr = err.Error()
	}
	if s == StateReady && r.outstanding > 0 {
		s = StateBusy
	}
	if r.state != s {
		p.metrics.ReplicaStates.WithLabelValues(p.model.Name, string(r.state)).Dec()
		p.metrics.ReplicaStates.WithLabelValues(p.model.Name, string(s)).Inc()
		r.state, r.since = s, time.Now()
	}
	p.grantLocked()
	if !p.serviceableLocked() {
		if p.retiring {
			p.failWaitersLocked(errRetired) // the model's name may be served elsewhere now
		} else {
			p.failWaitersLocked(ErrUnavailable)
		}
	}
	p.broadcastLocked()
}

// alive reports whether proc is set and its process has not exited (the
// supervisor may not have seen the exit yet).
func alive(proc Process) bool {
	if proc == nil {
		return false
	}
	select {
	case <-proc.Done():
		return false
	default:
		return true
	}
}

// serving reports whether r accepts requests.
func (r *replica) serving() bool { return r.state == StateReady || r.state == StateBusy }

// serviceableLocked: some replica serves or will soon.
func (p *pool) serviceableLocked() bool {
	for _, r := range p.replicas {
		if r.state.serviceable() && !r.leaving {
			return true
		}
	}
	return false
}

// startingLocked counts replicas that will serve soon but do not yet.
func (p *pool) startingLocked() int {
	n := 0
	for _, r := range p.replicas {
		if r.state == StateStarting || r.state == StateLoading {
			n++
		}
	}
	return n
}

// pickLocked takes a slot for a request and returns its replica, or nil.
// An ordinary request gets the serving replica with free capacity that was sent
// the longest beginning of its prompt (ps; at least minAffinityTokens; ties: the
// less busy) unless that beginning is shorter than longAffinityTokens and the
// replica has more than affinitySlack outstanding requests more than the least busy
// one; else the one with the fewest outstanding requests (ties: round robin); never
// one held or reserved for an isolated request. The replica taken remembers ps. An isolated request (see acquire) gets a
// serving replica with nothing outstanding, all to itself; when there is
// none, one serving replica is reserved for it, so that it drains: no
// ordinary request is dispatched to it any more.
func (p *pool) pickLocked(isolated bool, ps []prefix) *replica {
	if isolated {
		r := p.pickIsolatedLocked()
		if r != nil {
			p.rememberLocked(r, ps)
		}
		return r
	}
	var best, near *replica
	at, nearAt, nearTokens := 0, 0, 0
	n := len(p.replicas)
	for i := range n {
		j := (p.next + i) % n
		r := p.replicas[j]
		if !r.serving() || r.leaving || !alive(r.proc) || r.outstanding >= p.model.MaxConcurrency || r.isolation != isolationNone {
			continue
		}
		if best == nil || r.outstanding < best.outstanding {
			best, at = r, j
		}
		if t := r.prefixes.match(ps); t > nearTokens || t == nearTokens && t > 0 && r.outstanding < near.outstanding {
			near, nearAt, nearTokens = r, j, t
		}
	}
	// A long beginning costs more to compute again elsewhere than waiting behind the
	// replica's other requests: only its capacity bounds it.
	bounded := near != nil && (near.outstanding <= best.outstanding+affinitySlack || nearTokens >= longAffinityTokens)
	if bounded && nearTokens >= minAffinityTokens && p.model.Dispatch != config.DispatchLeastLoaded {
		best, at = near, nearAt
	}
	if best != nil {
		p.next = (at + 1) % n
		p.takeLocked(best)
		p.rememberLocked(best, ps)
	}
	return best
}

// rememberLocked records that r was sent ps; a stored conversation's history is held
// by one replica at a time, the last one sent a turn of it.
func (p *pool) rememberLocked(r *replica, ps []prefix) {
	r.prefixes.add(ps)
	for _, x := range ps {
		if !x.conversation {
			continue
		}
		for _, o := range p.replicas {
			if o != r {
				o.prefixes.drop(x)
			}
		}
	}
}

// remember is rememberLocked for a replica that served a request (r.proc, when it
// is still proc).
func (p *pool) remember(r *replica, proc Process, ps []prefix) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.proc == proc {
		p.rememberLocked(r, ps)
	}
}

// affine reports whether the pool dispatches by prefix affinity: more than one
// replica, and dispatch not least_loaded.
func (p *pool) affine() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.model.Replicas > 1 && p.model.Dispatch != config.DispatchLeastLoaded
}

// setDispatch changes the pool's dispatch policy, at once.
func (p *pool) setDispatch(d string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.model.Dispatch = d
}

func (p *pool) pickIsolatedLocked() *replica {
	var idle, drain, reserved *replica
	for _, r := range p.replicas {
		if !r.serving() || r.leaving || !alive(r.proc) {
			continue
		}
		switch {
		case r.isolation == isolationHeld:
		case r.outstanding == 0:
			if idle == nil || r.isolation == isolationReserved {
				idle = r
			}
		case r.isolation == isolationReserved:
			reserved = r
		case drain == nil || r.outstanding < drain.outstanding:
			drain = r
		}
	}
	if idle != nil {
		// The isolated request waiting first gets the first idle replica:
		// a reservation has done its work.
		for _, r := range p.replicas {
			if r.isolation == isolationReserved {
				r.isolation = isolationNone
			}
		}
		idle.isolation = isolationHeld
		p.takeLocked(idle)
		return idle
	}
	if reserved == nil && drain != nil {
		drain.isolation = isolationReserved
	}
	return nil
}

// unreserveLocked ends the reservation of a replica for an isolated request
// when no isolated request waits any more.
func (p *pool) unreserveLocked() {
	for _, w := range p.waiters {
		if w.isolated {
			return
		}
	}
	for _, r := range p.replicas {
		if r.isolation == isolationReserved {
			r.isolation = isolationNone
		}
	}
}

func (p *pool) takeLocked(r *replica) {
	r.outstanding++
	r.lastActive = time.Now()
	if r.state == StateReady {
		p.metrics.ReplicaStates.WithLabelValues(p.model.Name, string(StateReady)).Dec()
		p.metrics.ReplicaStates.WithLabelValues(p.model.Name, string(StateBusy)).Inc()
		r.state = StateBusy
	}
}

// grantLocked hands free capacity to queued requests in FIFO order. An
// isolated request that cannot be served yet (its reserved replica is
// draining) does not hold up the ordinary ones behind it.
func (p *pool) grantLocked() {
	for i := 0; i < len(p.waiters); {
		w := p.waiters[i]
		r := p.pickLocked(w.isolated, w.prefixes)
		if r == nil {
			if w.isolated {
				i++
				continue
			}
			break
		}
		p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
		w.ch <- grant{r: r, proc: r.proc, isolated: w.isolated} // buffered: never blocks
	}
	p.queueGaugeLocked()
}

func (p *pool) failWaitersLocked(err error) {
	for _, w := range p.waiters {
		w.err = err
		close(w.ch)
	}
	p.waiters = nil
	p.unreserveLocked()
	p.queueGaugeLocked()
}

// acquire reserves a slot on a replica, waiting in the queue up to
// queueTimeout when all are busy. The caller must release it. An isolated
// request gets a replica to itself (whatever its max_concurrency): a
// request that is retried after its replica died runs alone, so that should
// it kill this replica too, no other request dies with it and the death is
// its own.
//
// A retired pool takes no new request (errRetired), except an isolated one: a
// request whose replica died here is retried here, alone. A redirected request (one
// a replaced version sent back) is queued whatever max_queue says: it was accepted
// already.
func (p *pool) acquire(ctx context.Context, queueTimeout time.Duration, isolated, redirected bool, ps []prefix) (grant, error) {
	p.mu.Lock()
	if p.retiring && (!isolated || !p.serviceableLocked()) {
		p.mu.Unlock()
		return grant{}, errRetired
	}
	if p.closing {
		p.mu.Unlock()
		return grant{}, ErrStopping
	}
	if r := p.pickLocked(isolated, ps); r != nil {
		g := grant{r: r, proc: r.proc, isolated: isolated}
		p.broadcastLocked()
		p.mu.Unlock()
		return g, nil
	}
	if !p.serviceableLocked() {
		p.unreserveLocked()
		err := fmt.Errorf("model %q: %w: %s", p.model.Name, ErrUnavailable, p.lastErrorLocked())
		p.mu.Unlock()
		return grant{}, err
	}
	p.wakeOneLocked()
	// max_queue bounds waiting for busy replicas; a replica that is still
	// starting (at boot, after a crash, from idle) admits a slot's worth of
	// waiters whatever max_queue says.
	limit := max(p.model.MaxQueue, p.startingLocked()*p.model.MaxConcurrency)
	if len(p.waiters) >= limit && !redirected {
		p.unreserveLocked() // an isolated request's reservation, when it is not queued
		p.mu.Unlock()
		return grant{}, &QueueFullError{Model: p.model.Name, RetryAfter: time.Second}
	}
	w := &waiter{ch: make(chan grant, 1), isolated: isolated, prefixes: ps}
	p.waiters = append(p.waiters, w)
	p.queueGaugeLocked()
	p.broadcastLocked()
	p.mu.Unlock()

	timer := time.NewTimer(queueTimeout)
	defer timer.Stop()
	var werr error
	select {
	case g, ok := <-w.ch:
		if !ok {
			return grant{}, fmt.Errorf("model %q: %w", p.model.Name, w.err)
		}
		return g, nil
	case <-ctx.Done():
		werr = context.Cause(ctx)
	case <-timer.C:
		werr = fmt.Errorf("model %q: %w (%s)", p.model.Name, ErrQueueTimeout, queueTimeout)
	}
	// Leave the queue; a slot granted meanwhile goes back.
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, x := range p.waiters {
		if x == w {
			p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
			p.queueGaugeLocked()
			if isolated {
				p.unreserveLocked()
				p.grantLocked() // the replica it reserved takes ordinary requests again
				p.broadcastLocked()
			}
			return grant{}, werr
		}
	}
	if g, ok := <-w.ch; ok {
		p.releaseLocked(g)
	} else if w.err != nil {
		werr = fmt.Errorf("model %q: %w", p.model.Name, w.err)
	}
	return grant{}, werr
}

func (p *pool) lastErrorLocked() string {
	for _, r := range p.replicas {
		if r.lastErr != "" {
			return "last error: " + r.lastErr
		}
	}
	return "no replica is running"
}

// wakeOneLocked starts one replica stopped for idleness, as a request is
// about to wait for capacity.
func (p *pool) wakeOneLocked() {
	for _, r := range p.replicas {
		if r.state == StateIdle && !r.leaving {
			p.setStateLocked(r, StateStarting, nil)
			r.wake <- struct{}{}
			return
		}
	}
}

// retireIfIdle moves a replica with no requests for the idle timeout to the
// idle state (so nothing new is dispatched to it) and reports whether it did.
func (p *pool) retireIfIdle(r *replica) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.outstanding > 0 || time.Since(r.lastActive) < p.model.IdleTimeout.Std() {
		return false
	}
	r.proc = nil
	p.setStateLocked(r, StateIdle, nil)
	return true
}

// release returns a slot taken by acquire.
func (p *pool) release(g grant) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.releaseLocked(g)
}

func (p *pool) releaseLocked(g grant) {
	r := g.r
	if g.isolated {
		r.isolation = isolationNone
	}
	if r.outstanding <= 0 {
		p.log.Error("bug: replica slot released without being acquired", "replica", r.id)
		return
	}
	r.outstanding--
	r.lastActive = time.Now()
	if r.outstanding == 0 && r.state == StateBusy {
		p.metrics.ReplicaStates.WithLabelValues(p.model.Name, string(StateBusy)).Dec()
		p.metrics.ReplicaStates.WithLabelValues(p.model.Name, string(StateReady)).Inc()
		r.state = StateReady
	}
	if r.outstanding == 0 && r.leaving {
		r.cancel() // scaled down: its last request is done
	}
	p.grantLocked()
	p.broadcastLocked()
}

// shutdown stops accepting requests, waits for in-flight ones until ctx
// ends, then stops every replica's process and waits for the supervisors.
// It reports whether the in-flight requests finished in time.
func (p *pool) shutdown(ctx context.Context) (drained bool) {
	p.close(ErrStopping)
	return p.stopWhenEmpty(ctx)
}

// close makes p take no request any more: its queue is told err, its serving
// replicas are draining.
func (p *pool) close(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closing = true
	p.failWaitersLocked(err)
	for _, r := range p.replicas {
		if r.serving() {
			p.setStateLocked(r, StateDraining, nil)
		}
	}
}

// retire stops p taking new requests: acquire answers errRetired, for the caller to
// resolve the model's name again (a replacement, or nothing). With redirect, the
// requests waiting in its queue are sent back the same way; without, they are served
// as its replicas free up. Its replicas are not restarted any more. drain does the
// rest.
func (p *pool) retire(redirect bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.retiring, p.named = true, false
	if redirect {
		p.failWaitersLocked(errRetired)
	}
	p.broadcastLocked()
}

// drain waits for the requests a retired pool has (in flight or queued) until ctx
// ends, then stops its processes. It reports whether they finished in time.
func (p *pool) drain(ctx context.Context) (drained bool) {
	p.waitIdle(ctx, true)
	p.close(errRetired)
	return p.stopWhenEmpty(ctx)
}

// stopWhenEmpty waits for the in-flight requests until ctx ends, then stops
// every replica's process and waits for the supervisors. It reports whether the
// requests finished in time.
func (p *pool) stopWhenEmpty(ctx context.Context) (drained bool) {
	drained = p.waitIdle(ctx, false)
	if p.cancel != nil {
		p.cancel()
	}
	p.wg.Wait()
	return drained
}

// waitIdle waits until p has no request in flight (nor queued, with queued) or ctx
// ends, and reports whether it has none.
func (p *pool) waitIdle(ctx context.Context, queued bool) bool {
	for {
		p.mu.Lock()
		busy := 0
		if queued {
			busy = len(p.waiters)
		}
		for _, r := range p.replicas {
			busy += r.outstanding
		}
		ch := p.changed
		p.mu.Unlock()
		if busy == 0 {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// forget removes p's replicas from the replica-state metric once it is stopped for
// good (replaced or removed): another pool of the same name counts its own. A second
// call does nothing.
func (p *pool) forget() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.replicas {
		p.metrics.ReplicaStates.WithLabelValues(p.model.Name, string(r.state)).Dec()
	}
	p.replicas = nil
}

// scale makes p run n replicas: new ones start at once; of the ones to go, those
// not serving (starting, failed, idle) and then the least busy are chosen, take no
// new request, and stop once their requests are done.
func (p *pool) scale(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var staying []*replica
	for _, r := range p.replicas {
		if !r.leaving {
			staying = append(staying, r)
		}
	}
	for len(staying) < n {
		r := p.newReplicaLocked()
		p.replicas = append(p.replicas, r)
		staying = append(staying, r)
		if p.ctx != nil {
			p.superviseLocked(r)
		}
	}
	if len(staying) > n {
		// Idle, failed or starting first, then the least busy; the newest first among
		// equals.
		slices.SortStableFunc(staying, func(a, b *replica) int {
			if a.serving() != b.serving() {
				if a.serving() {
					return 1
				}
				return -1
			}
			if c := cmp.Compare(a.outstanding, b.outstanding); c != 0 {
				return c
			}
			return cmp.Compare(b.id, a.id)
		})
		for _, r := range staying[:len(staying)-n] {
			r.leaving = true
			if r.outstanding == 0 && r.cancel != nil {
				r.cancel()
			}
		}
	}
	p.model.Replicas = n
	p.grantLocked()
	p.broadcastLocked()
}

func (p *pool) leaving(r *replica) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return r.leaving
}

func (p *pool) isRetiring() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.retiring
}

// removeReplica drops r, stopped after scaling down, from p.
func (p *pool) removeReplica(r *replica) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if i := slices.Index(p.replicas, r); i >= 0 {
		p.replicas = slices.Delete(p.replicas, i, i+1)
		p.metrics.ReplicaStates.WithLabelValues(p.model.Name, string(r.state)).Dec()
		p.next = 0
	}
	p.broadcastLocked()
}

// waitServing waits until every replica of a new pool serves. It fails with the
// error of the first replica that could not start or load (the model's new version
// does not work: the old one must stay), or when ctx ends.
func (p *pool) waitServing(ctx context.Context) error {
	for {
		p.mu.Lock()
		if p.closing {
			p.mu.Unlock()
			return ErrStopping
		}
		all := true
		for _, r := range p.replicas {
			if r.lastErr != "" {
				err := fmt.Errorf("replica %d: %s", r.id, r.lastErr)
				p.mu.Unlock()
				return err
			}
			all = all && r.serving()
		}
		ch := p.changed
		p.mu.Unlock()
		if all {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("not ready in time: %w", context.Cause(ctx))
		}
	}
}

// status snapshots the pool.
func (p *pool) status() ModelStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := ModelStatus{
		Name: p.model.Name, Aliases: p.model.Aliases, Backend: p.model.Backend, Embedding: p.model.Embedding,
		Rerank: p.model.Rerank, Created: p.created, ContextLength: p.contextLength, MaxInputTokens: p.maxInputTokens, Capabilities: p.capabilities, Queued: len(p.waiters),
	}
	for _, r := range p.replicas {
		rs := ReplicaStatus{ID: r.id, State: r.state, Restarts: r.restarts, Outstanding: r.outstanding, LastError: r.lastErr, Since: r.since,
			ColdStarts: r.coldStarts, LastColdStart: r.lastColdStart}
		if r.proc != nil {
			rs.Pid = r.proc.Pid()
		}
		st.Replicas = append(st.Replicas, rs)
	}
	return st
}
