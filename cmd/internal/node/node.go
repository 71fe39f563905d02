// Package node wires blindbank daemons: a bank or merchant, its stores, its
// public TLS listener and its admin listener with a token (loopback, or
// mutual TLS). The commands, the demo and the integration tests all start
// nodes through it, so they run exactly what an operator runs.
package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/pebblestore"
	"github.com/blindbank/blindbank/bank/pgstore"
	"github.com/blindbank/blindbank/cmd/internal/transport"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/merchant"
	pb "github.com/blindbank/blindbank/proto"
)

// BankConfig configures a bank node.
type BankConfig struct {
	Dir         string // keys, TLS certificate, admin token and the Pebble store live here
	Listen      string // public address, e.g. 127.0.0.1:7443 (":0" picks a port)
	AdminListen string // must be loopback
	Keys        bank.KeyConfig
	Plaintext   bool // serve the public listener without TLS (loopback only)
	TLS         TLSOptions
	Now         func() time.Time
	Log         *slog.Logger
	Limits      RateLimits
	// Store is empty for the Pebble store in DIR/ledger, or a postgres://
	// URL: the ledger in PostgreSQL, shared by any number of replicas.
	Store string
	// CacheSize is the Pebble store's block cache in bytes; 0 means
	// pebblestore.DefaultCacheSize. Unused with PostgreSQL.
	CacheSize int64

	// KeyPassphrase decrypts DIR/keys.json, and encrypts it when the keys
	// are created; nil keeps new keys in clear. A key file in clear loads
	// either way, with a warning in the log.
	KeyPassphrase []byte

	// Signer, if set ("unix:///PATH"), is a "bankd signer" process holding
	// the denomination private keys: every denomination is signed there,
	// and the bank refuses to start if the signer's keys differ from its own.
	Signer string

	// RevocationPoll is how often the bank looks for denominations another
	// replica revoked, to serve the revoked key set (bank.WatchRevocations);
	// 0 means DefaultRevocationPoll. The store refuses their coins at once
	// whatever it is.
	RevocationPoll time.Duration

	// HealthPoll is how often the bank probes a networked store (PostgreSQL)
	// for its health check (watchStore); 0 means DefaultHealthPoll.
	HealthPoll time.Duration
}

// DefaultHealthPoll is how often a bank on PostgreSQL probes its store:
// within it a load balancer's health checks see a replica that cannot
// serve, and again one that can.
const DefaultHealthPoll = 5 * time.Second

// RefusalPrune is how often the bank deletes the withdraw refusals older
// than bank.RefusalHorizon (bank.WatchRefusals, also at start): a small
// fraction of the horizon, so that records outlive it by little.
const RefusalPrune = time.Hour

// DefaultRevocationPoll bounds how long a replica serves a key set without
// a revocation another replica made: one small read per interval.
const DefaultRevocationPoll = 2 * time.Second

// RateLimits bound what one peer address and one account may ask per
// second, and what one peer address may hold open at once; zero fields take
// the defaults, negative ones turn the limit off (load tests from one
// address).
type RateLimits struct {
	PerPeer    float64 // calls per second per peer address (burst: twice that)
	PerAccount float64 // withdrawals, payment orders, statements and status queries per account
	// RefusalsPerAccount bounds the withdraw refusals recorded per
	// account and second (bank.LimitRefusals; burst
	// DefaultRefusalBurst, or twice the rate if more): each is a synced
	// record kept for bank.RefusalHorizon.
	RefusalsPerAccount float64
	// CallsPerPeer and ConnsPerPeer bound the calls in progress and the
	// connections open at once per peer address on the public listener:
	// each call holds up to transport.MaxCallBytes of its request until it
	// ends, whether or not the peer ever finishes sending it.
	CallsPerPeer int
	ConnsPerPeer int
}

// Defaults: generous for honest wallets and merchants, tight enough that one
// address or account cannot monopolise the signing cores, nor one address
// hold more than DefaultCallsPerPeer × transport.MaxCallBytes (2 GiB) of
// unfinished requests in memory (answered calls a peer will not take add
// more: OPERATIONS, "Memory held by peers"). A merchant deposits each
// payment in a call of its own from one address, all at once: 256 is four
// times loadgen's usual 64. Wallets behind one NAT share an address, each
// with a connection of its own.
const (
	DefaultPerPeer    = 500
	DefaultPerAccount = 100
	// A wallet's requests are refused for good rarely (funds, limits, a
	// denomination's window): 20 at once, then one a second, is plenty
	// for one, and bounds what an account can make the bank store to
	// about 86,400 records a day, for the horizon (OPERATIONS,
	// "Durability").
	DefaultRefusalsPerAccount = 1
	DefaultRefusalBurst       = 20
	DefaultCallsPerPeer       = 256
	DefaultConnsPerPeer       = 256
	maxLimiterKeys            = 100_000
)

// peerCap is a per-peer bound as configured: 0 for none.
func peerCap(n, def int) int {
	switch {
	case n < 0:
		return 0
	case n == 0:
		return def
	}
	return n
}

// limiter is a per-key rate as configured (below 0: none; 0: def), with
// bursts of twice the rate, or of minBurst if that is more (the refusal
// budget's rate is low, its bursts not).
func limiter(perSecond, def float64, minBurst int) *bank.RateLimiter {
	switch {
	case perSecond < 0:
		return nil
	case perSecond == 0:
		perSecond = def
	}
	return bank.NewRateLimiter(perSecond, max(minBurst, int(2*perSecond)), maxLimiterKeys)
}

// AdminMaxStreams bounds the HTTP/2 streams (gRPC calls) one connection
// to the admin listener may have open at once: an admin client makes few
// calls at a time, and a gRPC client waits for a place beyond it.
// AdminIdleTimeout closes an admin connection without a request in
// progress (a client reconnects on its next).
const (
	AdminMaxStreams  = 64
	AdminIdleTimeout = 2 * time.Minute
)

// Daemon is the serving half every node shares: a public listener (TLS
// unless plaintext on loopback) and an admin listener behind a token
// (plaintext on loopback, or TLS requiring client certificates).
type Daemon struct {
	Addr        string // public listener address
	AdminAddr   string
	Fingerprint string // of the TLS certificate at start; empty without TLS
	CertFile    string
	TokenFile   string
	Token       string
	ClientAuth  transport.ClientAuth // on the public listener
	AdminTLS    bool                 // the admin listener serves TLS and requires client certificates

	Registry  *prometheus.Registry // served at /metrics on the admin listener
	PeerLimit *bank.RateLimiter    // calls per second per peer on the public listener
	PeerCalls int                  // calls in progress per peer on the public listener; 0: no bound
	PeerConns int                  // connections per peer on the public listener; 0: no bound

	public     *grpc.Server
	drain      *transport.Drain // the public listener's calls and writes, for its stop
	admin      *grpc.Server
	adminHTTP  *http.Server
	adminDrain *transport.Drain // the admin listener's calls and writes, for its stop
	log        *slog.Logger
	// stopTimeout bounds the listeners' stops; 0: StopTimeout.
	stopTimeout time.Duration
	health      *health.Server
	tls         *listenerTLS
	done        chan error
	stopping    chan struct{} // closed as stop begins: streaming calls end
	stopOnce    sync.Once
}

// CurrentFingerprint is the SHA-256 fingerprint of the certificate the
// public listener serves now (it changes when the files are replaced);
// empty without TLS.
func (d *Daemon) CurrentFingerprint() string {
	switch {
	case d.tls == nil:
		return ""
	case d.tls.public != nil:
		return d.tls.public.Fingerprint()
	case d.tls.admin != nil:
		return d.tls.admin.Fingerprint()
	}
	return ""
}

// daemonSpec is what a node asks of Daemon.start.
type daemonSpec struct {
	dir, listen, adminListen string
	plaintext                bool
	tls                      TLSOptions
	certMethods              map[string]bool // the calls ClientCertMethods protects; nil: not applicable
	log                      *slog.Logger
	public, admin            func(*grpc.Server)
	// listening, if set, learns the public listener's address before
	// anything is served.
	listening func(publicAddr string) error
	// routes adds HTTP endpoints to the admin listener, behind the token.
	routes func(mux *http.ServeMux, auth func(http.Handler) http.Handler)
}

// Bank is a running bank node.
type Bank struct {
	Daemon
	Bank        *bank.Bank
	KeysCreated bool

	store   bank.Store
	signer  *bank.SignerClient // nil without a signer process
	commits *commitMetrics
	backups *backupMetrics
	backup  sync.Mutex         // one backup at a time
	unwatch context.CancelFunc // stops WatchRevocations and WatchRefusals; nil until they run
	// storeDown: the store's probe has failed (watchStore), the health
	// check says NOT_SERVING.
	storeDown atomic.Bool
	watched   sync.WaitGroup // done once both returned
}

// openStore opens the ledger: Pebble in DIR/ledger, or the PostgreSQL
// database cfg.Store names (shared by any number of replicas).
func openStore(cfg BankConfig, commits *commitMetrics) (bank.Store, error) {
	if cfg.Store == "" {
		// The bank's clock judges the commits' deadlines too (NotAfter).
		return pebblestore.Open(filepath.Join(cfg.Dir, "ledger"), pebblestore.Options{Logger: cfg.Log, ObserveCommit: commits.observe, CacheSize: cfg.CacheSize, Now: cfg.Now})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return pgstore.Open(ctx, cfg.Store, pgstore.Options{Logger: cfg.Log})
}

// The histograms of a Pebble store's group commits: operations per commit,
// and the time of each (its fsync, mostly), in CommitSecondsBuckets.
const (
	CommitOpsMetric     = "blindbank_commit_batch_ops"
	CommitSecondsMetric = "blindbank_commit_seconds"
)

// CommitSecondsBuckets are the upper bounds of CommitSecondsMetric's
// buckets: 0.1 ms to 3.3 s, doubling.
var CommitSecondsBuckets = prometheus.ExponentialBuckets(0.0001, 2, 16)

// commitMetrics observe the store's group commits.
type commitMetrics struct {
	size    prometheus.Histogram
	latency prometheus.Histogram
}

func newCommitMetrics() *commitMetrics {
	return &commitMetrics{
		size: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: CommitOpsMetric, Help: "Operations per group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 10),
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: CommitSecondsMetric, Help: "Time of each synced group commit.",
			Buckets: CommitSecondsBuckets,
		}),
	}
}

func (c *commitMetrics) observe(ops int, d time.Duration) {
	c.size.Observe(float64(ops))
	c.latency.Observe(d.Seconds())
}

// instrument registers the bank's and the store's metrics.
func (n *Bank) instrument(now func() time.Time) error {
	store := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "blindbank_store_bytes", Help: "Bytes the ledger store occupies on disk.",
	}, func() float64 {
		if d, ok := n.store.(interface{ DiskUsage() uint64 }); ok {
			return float64(d.DiskUsage())
		}
		return 0
	})
	issuable := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "blindbank_keys_issuable_until_timestamp_seconds",
		Help: "Until when every denomination value has a key to issue coins under (Unix time): the earliest, over the values, of the end of the unbroken run of withdraw windows of keys not revoked from now; 0 if some value has none now. Past it, wallets cannot withdraw that value.",
	}, func() float64 {
		ks, _ := n.Bank.KeySet()
		if ks == nil {
			return 0
		}
		until := bank.KeySetWithdrawableUntil(ks, now())
		if until.IsZero() {
			return 0
		}
		return float64(until.Unix())
	})
	serving := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "blindbank_store_serving",
		Help: "1 while the ledger store can serve, 0 while its probe fails (a bank on PostgreSQL probes it every few seconds; the gRPC health check says NOT_SERVING then).",
	}, func() float64 {
		if n.storeDown.Load() {
			return 0
		}
		return 1
	})
	for _, c := range []prometheus.Collector{n.commits.size, n.commits.latency, store, n.backups.total, n.backups.last, issuable, serving} {
		if err := n.Registry.Register(c); err != nil {
			return err
		}
	}
	return n.Bank.Instrument(n.Registry)
}

// StartBank opens (or creates) a bank in cfg.Dir and serves it.
func StartBank(cfg BankConfig) (*Bank, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	// Refuse bad addresses and TLS settings before the slow key generation.
	if err := checkAddrs(cfg.Listen, cfg.AdminListen, cfg.Plaintext, cfg.TLS); err != nil {
		return nil, err
	}
	if _, err := cfg.TLS.publicAuth(cfg.Plaintext, MerchantMethods); err != nil {
		return nil, err
	}
	// The directory holds private keys and the ledger: owner only.
	for _, d := range []string{cfg.Dir, filepath.Join(cfg.Dir, "ledger")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return nil, err
		}
	}
	keys, keyFile, err := bank.OpenKeys(cfg.Dir, cfg.Keys, cfg.Now(), bank.KeyFileOptions{Passphrase: cfg.KeyPassphrase})
	if err != nil {
		return nil, err
	}
	created := keyFile.Created
	if cfg.Signer == "" && !keys.HasDenominationKeys() {
		return nil, errors.New("the key file holds no denomination private keys (stripped for a signer process): start bankd with --signer unix:///PATH")
	}
	var signer *bank.SignerClient
	if cfg.Signer != "" {
		if signer, err = bank.DialSigner(cfg.Signer, transport.DialFlowControl()...); err != nil {
			return nil, err
		}
		signer.Log = cfg.Log
		if keys, err = signer.RemoteKeys(keys); err != nil {
			signer.Close()
			return nil, fmt.Errorf("signer %s: %w", cfg.Signer, err)
		}
	}
	if !keyFile.Encrypted {
		cfg.Log.Warn("the key file is not encrypted at rest; encrypt it with \"bankd keys encrypt\"", "file", filepath.Join(cfg.Dir, bank.KeysFile))
	}
	commits := newCommitMetrics()
	store, err := openStore(cfg, commits)
	if err != nil {
		if signer != nil {
			signer.Close()
		}
		return nil, err
	}
	n := &Bank{Bank: bank.New(store, keys, cfg.Now, cfg.Log), KeysCreated: created, store: store, signer: signer, commits: commits}
	// Live key-set changes (bankd admin revoke-denomination) are saved in
	// the key file, with its passphrase, before the bank serves them.
	keyPath, keyOpts := filepath.Join(cfg.Dir, bank.KeysFile), bank.KeyFileOptions{Passphrase: cfg.KeyPassphrase}
	n.Bank.SetKeyFileEditor(func(change func(*bank.Keys) error) error {
		k, info, err := bank.LoadKeysWith(keyPath, keyOpts)
		if err != nil {
			return err
		}
		if err := change(k); err != nil {
			return err
		}
		opts := keyOpts
		if !info.Encrypted {
			opts.Passphrase = nil
		}
		return k.SaveWith(keyPath, opts)
	})
	// Revocations another replica logged first are adopted, never undone
	// (the store would refuse to log a key set without them); then the
	// audit log records the key set the bank serves.
	if err = n.Bank.SyncRevocations(context.Background()); err != nil {
		err = fmt.Errorf("adopting the audit log's revocations: %w", err)
	} else if err = n.Bank.PublishKeySet(context.Background()); err != nil {
		err = fmt.Errorf("publishing the key set in the audit log: %w", err)
	}
	if err != nil {
		store.Close()
		if signer != nil {
			signer.Close()
		}
		return nil, err
	}
	n.PeerLimit = limiter(cfg.Limits.PerPeer, DefaultPerPeer, 0)
	n.PeerCalls = peerCap(cfg.Limits.CallsPerPeer, DefaultCallsPerPeer)
	n.PeerConns = peerCap(cfg.Limits.ConnsPerPeer, DefaultConnsPerPeer)
	n.Bank.LimitAccounts(limiter(cfg.Limits.PerAccount, DefaultPerAccount, 0))
	n.Bank.LimitRefusals(limiter(cfg.Limits.RefusalsPerAccount, DefaultRefusalsPerAccount, DefaultRefusalBurst))
	n.backups = newBackupMetrics()
	err = n.start(daemonSpec{
		dir: cfg.Dir, listen: cfg.Listen, adminListen: cfg.AdminListen, plaintext: cfg.Plaintext,
		tls: cfg.TLS, certMethods: MerchantMethods, log: cfg.Log,
		public: n.Bank.Register,
		admin:  func(s *grpc.Server) { pb.RegisterBankAdminServer(s, n.Bank.AdminServer()) },
		routes: func(mux *http.ServeMux, auth func(http.Handler) http.Handler) {
			mux.Handle("POST "+BackupPath, auth(n.backupHandler(cfg.Log)))
		},
	})
	if err == nil {
		err = n.instrument(cfg.Now)
	}
	if err != nil {
		n.Close()
		return nil, err
	}
	poll := cfg.RevocationPoll
	if poll <= 0 {
		poll = DefaultRevocationPoll
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.unwatch = cancel
	n.watched.Go(func() { n.Bank.WatchRevocations(ctx, poll) })
	n.watched.Go(func() { n.Bank.WatchRefusals(ctx, RefusalPrune) })
	if p, ok := store.(bank.Prober); ok {
		every := cfg.HealthPoll
		if every <= 0 {
			every = DefaultHealthPoll
		}
		n.watched.Go(func() { n.watchStore(ctx, p, every, cfg.Log) })
	}
	return n, nil
}

// probeFailures is how many store probes in a row must fail before the
// health check says NOT_SERVING: one slow probe does not take a replica
// out of rotation, nor make its status flap.
const probeFailures = 2

// watchStore probes the store every interval until ctx ends, each probe
// given half the interval (at most two seconds), and reports it in the
// health check both listeners serve and in blindbank_store_serving:
// NOT_SERVING after probeFailures failures in a row (the database
// unreachable, this replica's clock or the server's durability settings
// refused: every call needing a new connection would fail), SERVING once
// one passes again. Each change is logged. A stop's NOT_SERVING is final
// (health.Server.Shutdown).
func (n *Bank) watchStore(ctx context.Context, p bank.Prober, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	timeout := min(interval/2, 2*time.Second)
	failed := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, timeout)
		err := p.Probe(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		switch {
		case err == nil && failed >= probeFailures:
			log.Info("the store serves again: health check SERVING")
			n.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
			n.storeDown.Store(false)
		case err != nil && failed+1 == probeFailures:
			log.Error("the store cannot serve: health check NOT_SERVING", "err", err)
			n.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
			n.storeDown.Store(true)
		}
		if err == nil {
			failed = 0
		} else {
			failed++
		}
	}
}

// start opens the listeners, registers the services and serves them.
func (d *Daemon) start(sp daemonSpec) error {
	if sp.log == nil {
		sp.log = slog.New(slog.DiscardHandler)
	}
	d.log = sp.log
	if err := checkAddrs(sp.listen, sp.adminListen, sp.plaintext, sp.tls); err != nil {
		return err
	}
	lt, err := loadTLS(sp.dir, sp.listen, sp.adminListen, sp.plaintext, sp.tls, sp.certMethods, sp.log)
	if err != nil {
		return err
	}
	d.tls, d.ClientAuth, d.AdminTLS = lt, lt.publicAuth, lt.admin != nil
	if lt.certFile != "" {
		d.CertFile = lt.certFile
		d.Fingerprint = d.CurrentFingerprint()
	}
	d.TokenFile = filepath.Join(sp.dir, transport.TokenFile)
	if d.Token, err = transport.LoadOrCreateToken(d.TokenFile); err != nil {
		return err
	}
	d.Registry = prometheus.NewRegistry()
	d.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	rpcMetrics, err := transport.NewRPCMetrics(d.Registry)
	if err != nil {
		return err
	}
	if err := lt.instrument(d.Registry); err != nil {
		return err
	}
	pubLis, err := net.Listen("tcp", sp.listen)
	if err != nil {
		return err
	}
	adminLis, err := net.Listen("tcp", sp.adminListen)
	if err != nil {
		pubLis.Close()
		return err
	}
	d.health = health.NewServer()
	if d.PeerConns > 0 {
		pubLis = transport.LimitConns(pubLis, d.PeerConns, rpcMetrics)
	}
	d.stopping = make(chan struct{})
	d.drain = transport.NewDrain()
	pubOpts := transport.Server{Log: sp.log, Metrics: rpcMetrics, PeerLimit: d.PeerLimit, PeerCalls: d.PeerCalls, Stopping: d.stopping, Drain: d.drain}
	if lt.public != nil {
		pubOpts.TLS = lt.public.ServerConfig(lt.publicAuth)
	}
	if lt.publicAuth == transport.ClientCertMethods {
		pubOpts.CertMethods = sp.certMethods
	}
	d.public = grpc.NewServer(pubOpts.Options()...)
	sp.public(d.public)
	healthpb.RegisterHealthServer(d.public, d.health)
	reflection.Register(d.public)
	d.adminDrain = transport.NewDrain()
	adminLis = d.adminDrain.Listener(adminLis)
	d.admin = grpc.NewServer(transport.Server{Log: sp.log, Metrics: rpcMetrics, Token: d.Token, Stopping: d.stopping, Drain: d.adminDrain}.Options()...)
	sp.admin(d.admin)
	healthpb.RegisterHealthServer(d.admin, d.health)
	// The admin listener speaks gRPC (HTTP/2: without TLS on loopback, or
	// over TLS with client certificates) and serves HTTP endpoints such as
	// Prometheus metrics at /metrics, all behind the token.
	auth := func(h http.Handler) http.Handler { return transport.RequireTokenHTTP(d.Token, h) }
	mux := http.NewServeMux()
	mux.Handle("/metrics", auth(promhttp.HandlerFor(d.Registry, promhttp.HandlerOpts{})))
	mux.Handle("GET "+ProfilePath, auth(http.HandlerFunc(profileHandler)))
	mux.Handle("GET "+HeapPath, auth(http.HandlerFunc(heapHandler)))
	if sp.routes != nil {
		sp.routes(mux, auth)
	}
	// gRPC calls are checked for the token before gRPC reads their
	// messages (RequireTokenGRPC); the admin server's interceptor checks
	// it again.
	adminGRPC := transport.RequireTokenGRPC(d.Token, d.admin)
	// The other endpoints (a backup) count as calls for the stop, which
	// waits for them; a gRPC call is counted by the admin server's
	// interceptor (transport.Drain.StopHTTP).
	adminMux := d.adminDrain.Handler(mux)
	d.adminHTTP = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
				adminGRPC.ServeHTTP(w, r)
				return
			}
			adminMux.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		// net/http's defaults: 1 MiB of headers, 250 streams a
		// connection, idle connections kept for ever.
		MaxHeaderBytes: transport.MaxHeaderListSize,
		IdleTimeout:    AdminIdleTimeout,
		HTTP2:          &http.HTTP2Config{MaxConcurrentStreams: AdminMaxStreams},
		Protocols:      new(http.Protocols),
		// Refused handshakes (no or a wrong client certificate) and the
		// like, as warnings in the daemon's log.
		ErrorLog: slog.NewLogLogger(sp.log.With("listener", "admin").Handler(), slog.LevelWarn),
	}
	d.adminHTTP.Protocols.SetHTTP1(true)
	if lt.admin != nil {
		d.adminHTTP.Protocols.SetHTTP2(true)
		d.adminHTTP.TLSConfig = lt.admin.ServerConfig(transport.ClientCertAll, "h2", "http/1.1")
	} else {
		d.adminHTTP.Protocols.SetUnencryptedHTTP2(true)
	}
	d.Addr, d.AdminAddr = pubLis.Addr().String(), adminLis.Addr().String()
	if sp.listening != nil {
		if err := sp.listening(d.Addr); err != nil {
			pubLis.Close()
			adminLis.Close()
			return err
		}
	}
	d.done = make(chan error, 2)
	go func() { d.done <- d.public.Serve(pubLis) }()
	go func() {
		if lt.admin != nil {
			d.done <- d.adminHTTP.ServeTLS(adminLis, "", "")
		} else {
			d.done <- d.adminHTTP.Serve(adminLis)
		}
	}()
	return nil
}

// Wait blocks until a listener fails or ctx ends.
func (d *Daemon) Wait(ctx context.Context) error {
	select {
	case err := <-d.done:
		return err
	case <-ctx.Done():
		return nil
	}
}

// StopTimeout bounds a listener's stop: calls still running then are cut
// off. CallsGrace bounds the wait, after it, for their handlers to return
// (their contexts cancelled) before the store closes.
const (
	StopTimeout = 10 * time.Second
	CallsGrace  = 5 * time.Second
)

// stop reports NOT_SERVING to health checks, ends the streaming calls
// (health Watch, reflection: they would last as long as their clients
// like), then drains both listeners at once, gracefully (in-flight calls
// finish, and with them their commits), forcing them after StopTimeout.
// A listener's connections are closed sooner, once no call is in
// progress and nothing more is being written (transport.Drain): a peer
// that stops reading would otherwise hold the stop its StopTimeout. A
// stop forced with calls still running waits up to CallsGrace for their
// handlers to return, so that the store, closed next, is not closed
// under one between two of its steps.
func (d *Daemon) stop() {
	if d.health != nil {
		d.health.Shutdown()
	}
	if d.stopping != nil {
		d.stopOnce.Do(func() { close(d.stopping) })
	}
	timeout := d.stopTimeout
	if timeout == 0 {
		timeout = StopTimeout
	}
	var wg sync.WaitGroup
	if d.public != nil {
		wg.Go(func() { d.drain.Stop(d.public, timeout) })
	}
	if d.adminHTTP != nil {
		wg.Go(func() {
			d.adminDrain.StopHTTP(d.adminHTTP, timeout)
			d.admin.Stop()
		})
	}
	wg.Wait()
	deadline := time.Now().Add(CallsGrace)
	for _, dr := range []*transport.Drain{d.drain, d.adminDrain} {
		if dr == nil || dr.Running() == 0 {
			continue
		}
		d.log.Warn("shutdown: waiting for the calls still running before closing the store", "calls", dr.Running(), "up_to", CallsGrace)
		if !dr.Wait(time.Until(deadline)) {
			d.log.Error("shutdown: calls still running; closing the store under them (they fail Unavailable, their peers already cut off)", "calls", dr.Running())
		}
	}
}

// Close stops serving, then closes the store.
func (n *Bank) Close() error {
	n.stop()
	if n.unwatch != nil {
		n.unwatch()
		n.watched.Wait()
	}
	if n.signer != nil {
		n.signer.Close()
	}
	if n.store != nil {
		return n.store.Close()
	}
	return nil
}

// MerchantConfig configures a merchant node.
type MerchantConfig struct {
	Dir         string
	BankAddr    string
	BankTLS     transport.ClientConfig
	Account     uint64
	Listen      string
	AdminListen string
	Plaintext   bool
	TLS         TLSOptions // ClientCertMethods does not apply to a merchant
	Catalogue   string     // the till's catalogue directory (merchant.LoadCatalogue); "" for none
	// PublicAddr is the host:port payment URIs name; "": the public
	// listener's address, unless it is a wildcard (then orders have none).
	PublicAddr string
	// BankMaster is the bank's master public key (merchant.Config); nil:
	// the one the merchant pinned at its first start.
	BankMaster ed25519.PublicKey
	Now        func() time.Time
	Log        *slog.Logger
	Transcript io.Writer // the merchant's protocol messages as JSON lines (docs/TRANSCRIPTS.md); nil: none
	// BankDial are extra options of the link to the bank (merchantd's
	// cli.TLSFlags.CertHint, which explains a certificate failure).
	BankDial []grpc.DialOption
}

// Merchant is a running merchant node.
type Merchant struct {
	Daemon
	Merchant *merchant.Merchant

	bankConn *grpc.ClientConn
}

// StartMerchant opens the merchant in cfg.Dir (created by merchant.Init),
// connects to its bank and serves.
func StartMerchant(ctx context.Context, cfg MerchantConfig) (*Merchant, error) {
	if cfg.Account == 0 {
		return nil, errors.New("merchant account id is required")
	}
	if cfg.PublicAddr != "" {
		if err := ecash.CheckMerchantAddr(cfg.PublicAddr); err != nil {
			return nil, fmt.Errorf("merchant public address: %w", err)
		}
	}
	conn, err := transport.Dial(cfg.BankAddr, cfg.BankTLS, cfg.BankDial...)
	if err != nil {
		return nil, err
	}
	m, err := merchant.Open(ctx, merchant.Config{
		Dir: cfg.Dir, Account: cfg.Account, Bank: pb.NewBankClient(conn), AuditLog: pb.NewAuditLogClient(conn), Now: cfg.Now, Log: cfg.Log, Catalogue: cfg.Catalogue,
		Transcript: cfg.Transcript, BankMaster: cfg.BankMaster,
	})
	if err == nil {
		// The directory holds the merchant key, the admin token and the
		// sales ledger: owner only, as the bank's (one made with mkdir is
		// open to all).
		if err = os.Chmod(cfg.Dir, 0o700); err != nil {
			m.Close()
		}
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	n := &Merchant{Merchant: m, bankConn: conn}
	n.PeerLimit = limiter(0, DefaultPerPeer, 0)
	n.PeerCalls, n.PeerConns = DefaultCallsPerPeer, DefaultConnsPerPeer
	err = n.start(daemonSpec{
		dir: cfg.Dir, listen: cfg.Listen, adminListen: cfg.AdminListen, plaintext: cfg.Plaintext,
		tls: cfg.TLS, log: cfg.Log,
		public: func(s *grpc.Server) { pb.RegisterMerchantServer(s, m.PublicServer()) },
		admin:  func(s *grpc.Server) { pb.RegisterMerchantAdminServer(s, m.AdminServer()) },
		listening: func(addr string) error {
			if cfg.PublicAddr != "" {
				return m.SetPublicAddr(cfg.PublicAddr)
			}
			if host, _, err := net.SplitHostPort(addr); err == nil {
				if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
					return nil // wallets cannot dial 0.0.0.0 or [::]
				}
			}
			return m.SetPublicAddr(addr)
		},
	})
	if err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// Close stops serving and closes the order store and the bank connection.
func (n *Merchant) Close() error {
	n.stop()
	err := n.Merchant.Close()
	n.bankConn.Close()
	return err
}
