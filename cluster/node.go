// Package cluster joins Switchboard servers into one system on
// protoactor-go's cluster: membership through a real provider (etcd, or
// automanaged for tests without etcd), remote messages between the nodes'
// node actors, rooms as cluster identities (a grain per room names its
// host; when the host dies or drains, the members on the other nodes
// re-join the room at the host the grain names next), and from any
// node: every node's calls listed, any call hung up by ID, any leg moved
// into any room or call, any call's or room's events read in the owner's
// order, presence merged over the nodes, a user registered on any node
// reached, and the calls of a node that died ended with a CDR written by
// a survivor.
//
// It sits between framework and cmd/switchboard: it uses the framework's
// public API only (Server.Calls, Server.Call, Server.Subscribe, AddDialer,
// Server.Move, Server.Room, Server.Presence).
package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	pcluster "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/automanaged"
	"github.com/asynkron/protoactor-go/cluster/clusterproviders/etcd"
	"github.com/asynkron/protoactor-go/cluster/identitylookup/disthash"
	"github.com/asynkron/protoactor-go/remote"
	"github.com/switchboard-voice/switchboard/framework"
	"github.com/switchboard-voice/switchboard/presence"
	"github.com/switchboard-voice/switchboard/sip"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Provider is the membership provider a node joins through.
type Provider uint8

const (
	// ProviderAutomanaged: nodes poll each other's health port over HTTP
	// (a fixed list of peers; no extra service). For tests and small
	// fixed deployments.
	ProviderAutomanaged Provider = iota
	// ProviderEtcd: nodes register under a lease in etcd and watch it.
	ProviderEtcd
)

// String returns the provider's flag name.
func (p Provider) String() string {
	switch p {
	case ProviderAutomanaged:
		return "automanaged"
	case ProviderEtcd:
		return "etcd"
	}
	return "Provider(" + strconv.Itoa(int(p)) + ")"
}

// ParseProvider reads a provider's flag name.
func ParseProvider(s string) (Provider, error) {
	switch strings.ToLower(s) {
	case "automanaged":
		return ProviderAutomanaged, nil
	case "etcd":
		return ProviderEtcd, nil
	}
	return 0, fmt.Errorf("cluster: unknown provider %q (want etcd or automanaged)", s)
}

// CauseNodeLost is the CDR cause of a call whose node left the cluster
// without ending it (killed, crashed, cut off).
const CauseNodeLost = "node lost"

// Options configure a node. Name and Addr are required.
type Options struct {
	// Name is the cluster's name: nodes join the cluster of that name.
	Name string
	// Node is this node's name as listings show it (default: Addr).
	Node string
	// Addr is the host:port protoactor's remote listens on for the
	// other nodes (port 0 picks a free one).
	Addr string
	// Provider is how nodes find each other.
	Provider Provider
	// Etcd lists the etcd endpoints (host:port) for ProviderEtcd
	// (default 127.0.0.1:2379).
	Etcd []string
	// AutomanagedPort is this node's health port for ProviderAutomanaged
	// and AutomanagedPeers every node's host:port of it (this one too).
	AutomanagedPort  int
	AutomanagedPeers []string
	// SyncInterval is how often a node sends its call list to the others
	// when nothing changed (default 2 s; changes go within 100 ms).
	SyncInterval time.Duration
	// RequestTimeout bounds one request to another node (default 3 s).
	RequestTimeout time.Duration
	// Rejoin bounds the re-joins of this node's members of rooms whose
	// host died or drains (zero fields: 5 a minute, backoff 250 ms
	// doubling to 2 s, a live host sought for 20 s, 1 s per ask).
	Rejoin RejoinLimits
	// OnLostCall receives the CDRs this node writes for calls of a lost
	// node (cause CauseNodeLost); each such CDR is logged as well.
	OnLostCall func(framework.CDR)
	// Secret, when set (at least 16 bytes, the same on every node),
	// signs the relay calls nodes place to each other (RelayHeader); a
	// relay without a valid signature is refused. Without it relays are
	// accepted from members' SIP addresses (see MembersOnly).
	Secret []byte
	// Logger receives the node's log lines (default slog.Default()).
	Logger *slog.Logger
}

// NodeCall is a call as the cluster lists it: which node it is on.
type NodeCall struct {
	Node string `json:"node"`
	framework.CallInfo
	// Relays are the call's relay legs to other nodes (a leg moved into
	// a room or call there, a caller bridged to a room hosted there, a
	// user reached through the node holding their connection). The far
	// end of each is a call there with the relay leg's ID, which Calls
	// does not list again: a session spanning nodes is listed once, on
	// the node that placed the relay.
	Relays []RelayLeg `json:"relays,omitempty"`
}

// Member is a node of the cluster as this node sees it.
type Member struct {
	Node string `json:"node"`          // "" until it has announced itself
	Addr string `json:"addr"`          // protoactor remote address
	SIP  string `json:"sip,omitempty"` // where other nodes call it ("" until it has announced itself)
	Self bool   `json:"self,omitempty"`
	// Rooms are the rooms live on another node (from its last call
	// list); GET /api/cluster shows this node's own too.
	Rooms []string `json:"rooms,omitempty"`
	// Draining: the node is stopping and hosts no new rooms (HandOver).
	Draining bool `json:"draining,omitempty"`
}

// ErrCallNotFound means no node has a call with that ID.
var ErrCallNotFound = errors.New("cluster: no such call")

// actorName is the name of every node's node actor.
const actorName = "switchboard-node"

// Node is this server's membership in a cluster.
type Node struct {
	srv    *framework.Server
	opts   Options
	log    *slog.Logger
	signer *relaySigner // nil without Options.Secret
	// netLog is log, rate-limited: for bad input from other nodes.
	netLog *slog.Logger

	system *actor.ActorSystem
	cl     *pcluster.Cluster
	prov   pcluster.ClusterProvider
	self   string // our remote address
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	dirty  chan struct{}

	// relayTargets: this node's relay calls carrying a moved leg, and
	// the session each leads to (RelayTarget).
	targetsMu    sync.Mutex
	relayTargets map[string]string

	mu      sync.Mutex
	members map[string]*Member   // by address, us included
	records map[string]*record   // other nodes' calls, by address
	lost    map[string]time.Time // addresses that left, when
	ended   map[string]struct{}  // call IDs already given a lost CDR
	topo    chan *pcluster.ClusterTopology

	presMu    sync.Mutex // guards watchers, lastMerged and fed; taken before mu
	watchers  map[*PresenceWatch]struct{}
	fed       map[string]struct{} // nodes whose rosters were handed to the store
	remergeCh chan struct{}

	pushMu sync.Mutex   // one push of the call list at a time
	roster rosterSender // guarded by pushMu

	relayMu  sync.Mutex
	relayOut map[string]relayLeg     // this node's relay legs to other nodes, by leg ID (made on first use)
	relays   map[*roomRelay]struct{} // this node's legs in rooms hosted elsewhere
	rejoin   RejoinLimits
	// draining: this node is stopping (HandOver): it hosts no room.
	draining atomic.Bool

	keptMu     sync.Mutex
	kept       map[string]*keptCall // calls of this node, readable until endedRetention after their end
	keptPruned time.Time
	lastMerged map[string]presence.Presence
}

// record is the last call list a node sent us.
type record struct {
	node  string
	sip   string
	calls map[string]framework.CallInfo
	rooms []string
	// users is its own presence roster with each user's dialogs there,
	// as of its push rosterSeq; never changed in place (a delta makes a
	// new map), so readers may use it outside mu.
	users     map[string]presence.Entry
	rosterSeq uint64
	// relays maps its relay legs to other nodes to the calls holding them.
	relays map[string]string
	seen   time.Time
	// draining: the node is stopping (its rooms move elsewhere).
	draining bool
}

// Join starts a node for srv and joins the cluster: it listens on
// opts.Addr, registers with the provider and starts its node actor. It
// returns once the node is a member. Leave ends it.
func Join(ctx context.Context, srv *framework.Server, opts Options) (n *Node, err error) {
	if opts.Name == "" {
		return nil, errors.New("cluster: join: no cluster name")
	}
	host, portStr, err := net.SplitHostPort(opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("cluster: join %s: address %q: %w", opts.Name, opts.Addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("cluster: join %s: port %q: %w", opts.Name, portStr, err)
	}
	if port == 0 {
		if port, err = freePort(host); err != nil {
			return nil, fmt.Errorf("cluster: join %s: %w", opts.Name, err)
		}
	}
	if len(opts.Secret) > 0 && len(opts.Secret) < minSecret {
		return nil, fmt.Errorf("cluster: join %s: the secret has %d bytes, want at least %d", opts.Name, len(opts.Secret), minSecret)
	}
	if opts.SyncInterval <= 0 {
		opts.SyncInterval = 2 * time.Second
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 3 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	self := net.JoinHostPort(host, strconv.Itoa(port))
	if opts.Node == "" {
		opts.Node = self
	}
	log = log.With("component", "cluster", "cluster", opts.Name, "node", opts.Node)

	var provider pcluster.ClusterProvider
	switch opts.Provider {
	case ProviderEtcd:
		eps := opts.Etcd
		if len(eps) == 0 {
			eps = []string{"127.0.0.1:2379"}
		}
		provider = &lazyEtcd{cfg: clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second}}
	case ProviderAutomanaged:
		if opts.AutomanagedPort == 0 || len(opts.AutomanagedPeers) == 0 {
			return nil, fmt.Errorf("cluster: join %s: automanaged needs a port and the peers' host:port", opts.Name)
		}
		provider = automanaged.NewWithConfig(time.Second, opts.AutomanagedPort, opts.AutomanagedPeers...)
	default:
		return nil, fmt.Errorf("cluster: join %s: provider %v", opts.Name, opts.Provider)
	}

	quiet := func(*actor.ActorSystem) *slog.Logger {
		return slog.New(framework.LevelHandler(log.Handler(), slog.LevelWarn))
	}
	system := actor.NewActorSystem(actor.WithLoggerFactory(quiet))
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	n = &Node{srv: srv, opts: opts, log: log, netLog: slog.New(sip.NewLimitedHandler(log.Handler(), 5)), system: system, self: self, ctx: cctx, cancel: cancel,
		dirty: make(chan struct{}, 1), members: map[string]*Member{self: {Node: opts.Node, Addr: self, Self: true}},
		records: map[string]*record{}, lost: map[string]time.Time{}, ended: map[string]struct{}{},
		topo: make(chan *pcluster.ClusterTopology, 64), watchers: map[*PresenceWatch]struct{}{}, fed: map[string]struct{}{}, remergeCh: make(chan struct{}, 1)}
	if len(opts.Secret) > 0 {
		n.signer = &relaySigner{key: bytes.Clone(opts.Secret)}
	} else {
		log.Warn("cluster: no secret: the remote port takes any connection and relay calls between nodes are accepted by source address only (set one with --cluster-secret-file)", "remote", self)
	}
	if _, err := system.Root.SpawnNamed(actor.PropsFromProducer(func() actor.Actor { return &nodeActor{n: n} }), actorName); err != nil {
		cancel()
		system.Shutdown()
		return nil, fmt.Errorf("cluster: join %s: node actor: %w", opts.Name, err)
	}
	// Members of rooms hosted elsewhere (no message reaches the node actor
	// before the member starts below).
	n.relays, n.rejoin = map[*roomRelay]struct{}{}, opts.Rejoin.withDefaults()
	system.EventStream.Subscribe(func(ev any) {
		if t, ok := ev.(*pcluster.ClusterTopology); ok {
			select {
			case n.topo <- t:
			default:
				n.log.Warn("cluster: topology events backlog; one dropped (the next one carries the full member list)")
			}
		}
	})
	rooms := pcluster.NewKind(roomKind, actor.PropsFromProducer(func() actor.Actor { return &roomGrain{n: n} }))
	ropts, err := remoteOptions(opts.Secret)
	if err != nil {
		cancel()
		system.Shutdown()
		return nil, err
	}
	cfg := pcluster.Configure(opts.Name, provider, disthash.New(), remote.Configure(host, port, ropts...),
		pcluster.WithRequestTimeout(opts.RequestTimeout), pcluster.WithKinds(rooms))
	n.cl = pcluster.New(system, cfg)
	n.prov = provider
	// protoactor panics when the provider cannot start (etcd down).
	if err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("%v", r)
			}
		}()
		n.cl.StartMember()
		return nil
	}(); err != nil {
		cancel()
		system.Shutdown()
		return nil, fmt.Errorf("cluster: join %s via %v: %w", opts.Name, opts.Provider, err)
	}
	// Subscribed after the member started, this handler runs after
	// protoactor's own (its PID cache and disthash's placement drop a
	// member that left), so a room grain asked from here is asked of a
	// live member.
	system.EventStream.Subscribe(func(ev any) {
		if t, ok := ev.(*pcluster.ClusterTopology); ok && len(t.Left) > 0 {
			left := make([]string, 0, len(t.Left))
			for _, m := range t.Left {
				left = append(left, m.Address())
			}
			go n.hostsLeft(left, reasonHostLost)
		}
	})
	sub := srv.Subscribe(cctx, framework.FromNow)
	n.wg.Add(5)
	go n.watchPresence()
	go n.remergeLoop()
	go n.watchCalls(sub)
	go n.syncLoop()
	go n.topologyLoop()
	srv.AddDialer(contactDialer{n})
	log.Info("cluster: joined", "provider", opts.Provider.String(), "addr", self)
	return n, nil
}

// Addr returns the node's remote address (host:port).
func (n *Node) Addr() string { return n.self }

// Name returns the node's name.
func (n *Node) Name() string { return n.opts.Node }

// Leave leaves the cluster: the others get this node's call list one last
// time, the provider deregisters the node (the others see it leave at
// once rather than after a timeout) and the remote closes. Calls on this
// server are not touched: stop the server first (its calls are hung up),
// so that no survivor writes "node lost" CDRs for them.
func (n *Node) Leave() {
	n.cancel()
	n.wg.Wait()
	n.presMu.Lock()
	for w := range n.watchers { // presence watchers end with the node
		delete(n.watchers, w)
		close(w.c)
	}
	n.presMu.Unlock()
	// The others get this node's last call list (empty once the server
	// has hung up its calls), so that leaving is not mistaken for losing
	// calls.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	n.pushCallsCtx(ctx)
	cancel()
	// Deregister first, then stop the actor system and the remote at
	// once: protoactor's graceful remote shutdown races with messages
	// still arriving (data races in its endpoint reader and manager), and
	// deregistration is what tells the others.
	// The provider's own calls have no deadline (an etcd that is gone
	// would hold the process forever): wait for it at most 5 s.
	dereg := make(chan error, 1)
	go func() { dereg <- n.prov.Shutdown(true) }()
	select {
	case err := <-dereg:
		if err != nil {
			n.log.Warn("cluster: deregister", "error", err)
		}
	case <-time.After(5 * time.Second):
		n.log.Warn("cluster: deregister did not finish in 5 s; leaving anyway (the others will see this node's lease expire)")
	}
	n.cl.Shutdown(false)
	n.log.Info("cluster: left")
}

// Members returns the nodes this node sees, sorted by address.
func (n *Node) Members() []Member {
	n.mu.Lock()
	out := make([]Member, 0, len(n.members))
	for addr, m := range n.members {
		mm := *m
		if r := n.records[addr]; r != nil {
			mm.Rooms, mm.Draining = r.rooms, r.draining
		}
		if mm.Self {
			mm.Draining = n.draining.Load()
		}
		out = append(out, mm)
	}
	n.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Addr < out[j].Addr })
	return out
}

// Calls lists every node's calls: each node is asked now. A session that
// spans two nodes through a relay is listed once, on the node that placed
// the relay, with the relay in NodeCall.Relays. A node that does not
// answer in time is reported in the error (wrapping every failure); the
// calls of those that did are returned anyway.
func (n *Node) Calls(ctx context.Context) ([]NodeCall, error) {
	members := n.Members()
	type result struct {
		node   string
		calls  []NodeCall
		relays []relayRef
		err    error
	}
	results := make(chan result, len(members))
	for _, m := range members {
		go func() {
			var resp callsResp
			err := n.ask(ctx, m.Addr, msgListCalls, struct{}{}, &resp)
			var calls []NodeCall
			for _, c := range resp.Calls {
				calls = append(calls, NodeCall{Node: resp.Node, CallInfo: c})
			}
			results <- result{resp.Node, calls, resp.Relays, err}
		}()
	}
	var all []NodeCall
	var errs []error
	refs := map[string][]relayRef{}
	for range members {
		r := <-results
		all = append(all, r.calls...)
		if len(r.relays) > 0 {
			refs[r.node] = r.relays
		}
		if r.err != nil {
			errs = append(errs, r.err)
		}
	}
	all = foldRelays(all, refs)
	sort.Slice(all, func(i, j int) bool {
		if !all[i].Start.Equal(all[j].Start) {
			return all[i].Start.Before(all[j].Start)
		}
		return all[i].ID < all[j].ID
	})
	return all, errors.Join(errs...)
}

// ownerFirst returns the members with the likely owner of the call or
// leg id (from the replicated call lists) first: whom to ask first.
func (n *Node) ownerFirst(id string) []Member {
	members := n.Members()
	owner := n.ownerOf(id)
	slices.SortStableFunc(members, func(a, b Member) int {
		switch {
		case a.Addr == owner && b.Addr != owner:
			return -1
		case b.Addr == owner && a.Addr != owner:
			return 1
		}
		return 0
	})
	return members
}

// Hangup hangs up the call with that ID on whichever node it is: the node
// its last call list names first, else every node. It returns once that
// node has hung it up, or ErrCallNotFound.
func (n *Node) Hangup(ctx context.Context, id string) error {
	members := n.ownerFirst(id)
	var errs []error
	for _, m := range members {
		var resp hangupResp
		if err := n.ask(ctx, m.Addr, msgHangup, hangupReq{ID: id}, &resp); err != nil {
			errs = append(errs, err)
			continue
		}
		if resp.Found {
			return nil
		}
	}
	if len(errs) > 0 {
		// Not found where asked, but not every node answered.
		return fmt.Errorf("cluster: hang up %s: %w", id, errors.Join(errs...))
	}
	return fmt.Errorf("cluster: hang up %s: %w", id, ErrCallNotFound)
}

// ownerOf is the address whose call list has id, or "".
func (n *Node) ownerOf(id string) string {
	if n.srv.Call(id) != nil {
		return n.self
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for addr, r := range n.records {
		if _, ok := r.calls[id]; ok {
			return addr
		}
	}
	return ""
}

// freePort asks the kernel for a free TCP port on host.
func freePort(host string) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// marshal is json.Marshal for the node's own message types, which always
// marshal.
func marshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("cluster: marshal %T: %v", v, err))
	}
	return b
}

// lazyEtcd creates protoactor's etcd provider (and so its etcd client)
// only when the member starts, after the remote has started: the remote
// sets gRPC's process-wide logger as it starts, which races with a gRPC
// client already running (the race detector flags it).
type lazyEtcd struct {
	cfg clientv3.Config
	p   *etcd.Provider
}

func (l *lazyEtcd) StartMember(c *pcluster.Cluster) error {
	p, err := etcd.NewWithConfig("/switchboard", l.cfg)
	if err != nil {
		return fmt.Errorf("etcd %v: %w", l.cfg.Endpoints, err)
	}
	l.p = p
	return p.StartMember(c)
}

func (l *lazyEtcd) StartClient(c *pcluster.Cluster) error {
	p, err := etcd.NewWithConfig("/switchboard", l.cfg)
	if err != nil {
		return fmt.Errorf("etcd %v: %w", l.cfg.Endpoints, err)
	}
	l.p = p
	return p.StartClient(c)
}

func (l *lazyEtcd) Shutdown(graceful bool) error {
	if l.p == nil {
		return nil
	}
	return l.p.Shutdown(graceful)
}
