package sip

import (
	"hash/maphash"
	"reflect"
	"sync"
	"time"
	"unsafe"

	"github.com/emiago/sipgo/sip"
)

// A server transaction over UDP must outlive its final response: a
// non-INVITE one (the BYE's) answers retransmissions of its request with
// the same response until Timer J (64*T1, 32 s) fires, and an INVITE one
// answered 2xx absorbs retransmitted INVITEs until Timer L (RFC 6026,
// also 32 s). sipgo keeps the whole transaction for that: the parsed
// request, the response, their headers, the FSM and its timers — about
// 4 KB for a BYE and 7 KB for an INVITE. At 2,000 one-second calls a
// second that is 64,000 of each, most of the server's memory.
//
// txMemory keeps what absorbing a retransmission needs instead: a hash of
// the transaction key (RFC 3261 17.2.3: branch, sent-by, method) and the
// final status sent, about 10 bytes an entry. A BYE's transaction is
// terminated as soon as it has answered, and an ended call's INVITE
// transaction is let go at once; a retransmission of either then finds
// no transaction, arrives at the handler as a new request, and is
// answered from here (the BYE's same status again) or absorbed (the
// INVITE) — RFC behaviour, without the transaction.
//
// Entries are kept in generations of span/(txGenerations-1): each
// generation is a map that is dropped whole, so an entry lives between
// span and span*txGenerations/(txGenerations-1) and the memory goes back
// to the heap with its generation (Go maps never shrink).
type txMemory struct {
	span time.Duration
	seed maphash.Seed
	now  func() time.Time // time.Now; tests set a clock

	mu    sync.Mutex
	gens  [txGenerations]map[uint64]uint16 // gens[0] is the newest
	start time.Time                        // when gens[0] began
	timer *time.Timer                      // rotates while anything is kept
	size  int                              // entries in all generations
}

// txGenerations is how many maps txMemory keeps; the last one is the
// oldest and goes at the next rotation.
const txGenerations = 5

// txAbsorb is the status txMemory keeps for an INVITE whose transaction
// sent a 2xx: a retransmission is absorbed, not answered (RFC 6026 7.1:
// 2xx retransmissions are the dialog's business, and that dialog is over).
const txAbsorb = 0

func newTxMemory(span time.Duration) *txMemory {
	return &txMemory{span: span, seed: maphash.MakeSeed(), now: time.Now}
}

// rotate drops the generations older than span as of now. mu is held.
func (m *txMemory) rotate(now time.Time) {
	d := m.span / (txGenerations - 1)
	if m.start.IsZero() {
		m.start = now
		return
	}
	for n := 0; now.Sub(m.start) >= d && n < txGenerations; n++ {
		if old := m.gens[txGenerations-1]; old != nil {
			m.size -= len(old)
		}
		copy(m.gens[1:], m.gens[:txGenerations-1])
		m.gens[0] = nil
		m.start = m.start.Add(d)
	}
	if now.Sub(m.start) >= d { // idle for longer than every generation
		m.start = now
	}
}

// remember records that the transaction with this key ended with status
// (txAbsorb for an accepted INVITE).
func (m *txMemory) remember(key string, status uint16) {
	h := maphash.String(m.seed, key)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rotate(m.now())
	if m.gens[0] == nil {
		m.gens[0] = make(map[uint64]uint16)
	}
	if _, dup := m.gens[0][h]; !dup {
		m.size++
	}
	m.gens[0][h] = status
	if m.timer == nil {
		// Rotate without traffic too, so an idle server gives the memory
		// back; the timer stops once nothing is kept.
		m.timer = time.AfterFunc(m.span/(txGenerations-1), m.tick)
	}
}

// tick rotates on a timer and re-arms while entries remain.
func (m *txMemory) tick() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rotate(m.now())
	if m.size == 0 || m.timer == nil {
		m.timer = nil
		return
	}
	m.timer.Reset(m.span / (txGenerations - 1))
}

// recall returns the status remembered for key, if any.
func (m *txMemory) recall(key string) (status uint16, ok bool) {
	return m.recallHash(maphash.String(m.seed, key))
}

// recallBytes is recall for a key held as bytes (the same hash).
func (m *txMemory) recallBytes(key []byte) (status uint16, ok bool) {
	return m.recallHash(maphash.Bytes(m.seed, key))
}

func (m *txMemory) recallHash(h uint64) (status uint16, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rotate(m.now())
	for _, g := range m.gens {
		if s, ok := g[h]; ok {
			return s, true
		}
	}
	return 0, false
}

// len returns how many transactions are remembered.
func (m *txMemory) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.size
}

// close stops the rotation timer and forgets everything.
func (m *txMemory) close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.timer != nil {
		m.timer.Stop()
		m.timer = nil
	}
	m.gens = [txGenerations]map[uint64]uint16{}
	m.size = 0
}

// txKey returns a server transaction's key.
func txKey(req *sip.Request, tx sip.ServerTransaction) string {
	if k, ok := tx.(interface{ Key() string }); ok {
		return k.Key()
	}
	key, _ := sip.ServerTxKeyMake(req)
	return key
}

// reasonFor is the reason phrase txMemory answers a retransmission with.
func reasonFor(status uint16) string {
	switch status {
	case 200:
		return "OK"
	case 481:
		return "Call/Transaction Does Not Exist"
	}
	return "Response"
}

// finishNonInvite ends a non-INVITE server transaction that has sent its
// final response: over UDP it is remembered in a.txs and terminated now
// instead of lingering for Timer J; over reliable transports sipgo ends
// it anyway.
func (a *Agent) finishNonInvite(req *sip.Request, tx sip.ServerTransaction, status int) {
	if sip.IsReliable(req.Transport()) {
		return
	}
	a.txs.remember(txKey(req, tx), uint16(status))
	tx.Terminate()
}

// answerRetransmission answers req from a.txs if it is the retransmission
// of a transaction that was finished early: a BYE gets the status it got
// the first time, an INVITE whose call was answered is absorbed. It
// reports whether req was one.
func (a *Agent) answerRetransmission(req *sip.Request, tx sip.ServerTransaction) bool {
	if sip.IsReliable(req.Transport()) || a.txs.len() == 0 {
		return false
	}
	status, ok := a.txs.recall(txKey(req, tx))
	if !ok {
		return false
	}
	if status != txAbsorb {
		if err := tx.Respond(sip.NewResponseFromRequest(req, int(status), reasonFor(status), nil)); err != nil {
			a.log.Debug("sip: answering a retransmission failed", "method", string(req.Method), "error", err)
		}
	}
	tx.Terminate()
	return true
}

// finishInvite lets go of an inbound call's INVITE transaction that sent
// a 2xx and has been terminated since (the dialog ended: sipgo
// terminates it on a BYE either way, or the 2xx was never ACKed): its
// Timer L is stopped, and over UDP its key is remembered so that a late
// retransmission of the INVITE is absorbed rather than taken for a new
// call. A transaction still running is left alone: it may still be
// retransmitting its 2xx.
func (a *Agent) finishInvite(tx sip.ServerTransaction) {
	if it, ok := tx.(*inviteTx); ok {
		// Ours keeps nothing alive after its 2xx; ending it remembers
		// its key.
		it.Terminate()
		return
	}
	stx, ok := tx.(*sip.ServerTx)
	if !ok {
		return
	}
	select {
	case <-stx.Done():
	default:
		return
	}
	stopTimerL(stx)
	if req := stx.Origin(); req != nil && !sip.IsReliable(req.Transport()) {
		a.txs.remember(stx.Key(), txAbsorb)
	}
}

// stopTimerL stops an INVITE server transaction's Timer L. sipgo v1.7.2
// starts it when the transaction sends a 2xx (RFC 6026's "Accepted"
// state) and its ServerTx.delete stops every timer but that one, so a
// transaction terminated early stays reachable from the runtime's timer
// heap — request, 2xx, SDP and all — until Timer L fires 32 s later. This
// does what delete should (the fix belongs upstream): under the
// transaction's own lock, as sipgo sets the timer, it stops it. The
// fields are sipgo's unexported ones; TestStopTimerLFindsSipgoFields
// fails if a sipgo upgrade renames them, and then this does nothing.
func stopTimerL(tx *sip.ServerTx) {
	if !timerLFields.ok {
		return
	}
	p := unsafe.Pointer(tx)
	mu := (*sync.Mutex)(unsafe.Add(p, timerLFields.mu))
	t := (**time.Timer)(unsafe.Add(p, timerLFields.timer))
	mu.Lock()
	if *t != nil {
		(*t).Stop()
		*t = nil
	}
	mu.Unlock()
}

// timerLFields are the offsets in sip.ServerTx of its mutex and Timer L,
// found once by reflection (ok is false if either is missing or not of
// the expected type).
var timerLFields = func() (f struct {
	mu, timer uintptr
	ok        bool
}) {
	t := reflect.TypeFor[sip.ServerTx]()
	mu, ok1 := t.FieldByName("mu")
	tl, ok2 := t.FieldByName("timer_l")
	if !ok1 || !ok2 || mu.Type != reflect.TypeFor[sync.Mutex]() || tl.Type != reflect.TypeFor[*time.Timer]() {
		return f
	}
	f.mu, f.timer = fieldOffset(t, mu.Index), fieldOffset(t, tl.Index)
	f.ok = f.mu != ^uintptr(0) && f.timer != ^uintptr(0)
	return f
}()

// fieldOffset is the offset of a (possibly promoted) field from the start
// of the outer struct: StructField.Offset of a promoted field is relative
// to the struct that declares it.
func fieldOffset(t reflect.Type, index []int) uintptr {
	var off uintptr
	for _, i := range index {
		if t.Kind() != reflect.Struct {
			return ^uintptr(0) // an embedded pointer: not a fixed offset
		}
		f := t.Field(i)
		off += f.Offset
		t = f.Type
	}
	return off
}
