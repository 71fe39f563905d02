// Package node wires blindbank daemons: a bank or merchant, its stores, its
// public TLS listener and its loopback admin listener with a token. The
// commands, the demo and the integration tests all start nodes through it,
// so they run exactly what an operator runs.
package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/pebblestore"
	"github.com/blindbank/blindbank/cmd/internal/transport"
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
	Now         func() time.Time
	Log         *slog.Logger
}

// Daemon is the serving half every node shares: a public listener (TLS
// unless plaintext on loopback) and a loopback admin listener behind a token.
type Daemon struct {
	Addr        string // public listener address
	AdminAddr   string
	Fingerprint string // of the TLS certificate; empty with plaintext
	CertFile    string
	TokenFile   string
	Token       string

	public *grpc.Server
	admin  *grpc.Server
	done   chan error
}

// Bank is a running bank node.
type Bank struct {
	Daemon
	Bank        *bank.Bank
	KeysCreated bool

	store *pebblestore.Store
}

// StartBank opens (or creates) a bank in cfg.Dir and serves it.
func StartBank(cfg BankConfig) (*Bank, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	// Refuse bad addresses before the slow key generation.
	if err := checkAddrs(cfg.Listen, cfg.AdminListen, cfg.Plaintext); err != nil {
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
	keys, created, err := bank.LoadOrCreateKeys(cfg.Dir, cfg.Keys, cfg.Now())
	if err != nil {
		return nil, err
	}
	store, err := pebblestore.Open(filepath.Join(cfg.Dir, "ledger"), pebblestore.Options{Logger: cfg.Log})
	if err != nil {
		return nil, err
	}
	n := &Bank{Bank: bank.New(store, keys, cfg.Now, cfg.Log), KeysCreated: created, store: store}
	err = n.start(cfg.Dir, cfg.Listen, cfg.AdminListen, cfg.Plaintext, cfg.Log,
		func(s *grpc.Server) { pb.RegisterBankServer(s, n.Bank.PublicServer()) },
		func(s *grpc.Server) { pb.RegisterBankAdminServer(s, n.Bank.AdminServer()) })
	if err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

// start opens the listeners, registers the services and serves them.
func (d *Daemon) start(dir, listen, adminListen string, plaintext bool, log *slog.Logger, public, admin func(*grpc.Server)) error {
	pubLis, adminLis, cert, err := listeners(dir, listen, adminListen, plaintext)
	if err != nil {
		return err
	}
	if cert != nil {
		d.Fingerprint = transport.Fingerprint(cert.Certificate[0])
		d.CertFile = filepath.Join(dir, transport.CertFile)
	}
	d.TokenFile = filepath.Join(dir, transport.TokenFile)
	if d.Token, err = transport.LoadOrCreateToken(d.TokenFile); err != nil {
		pubLis.Close()
		adminLis.Close()
		return err
	}
	d.public = grpc.NewServer(transport.ServerOptions(cert, log)...)
	public(d.public)
	d.admin = grpc.NewServer(transport.AdminServerOptions(d.Token, log)...)
	admin(d.admin)
	d.Addr, d.AdminAddr = pubLis.Addr().String(), adminLis.Addr().String()
	d.done = make(chan error, 2)
	go func() { d.done <- d.public.Serve(pubLis) }()
	go func() { d.done <- d.admin.Serve(adminLis) }()
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

// stop drains both servers gracefully (in-flight calls finish, and with them
// their commits), forcing them after 10 seconds.
func (d *Daemon) stop() {
	for _, s := range []*grpc.Server{d.public, d.admin} {
		if s == nil {
			continue
		}
		ok := make(chan struct{})
		go func() { s.GracefulStop(); close(ok) }()
		select {
		case <-ok:
		case <-time.After(10 * time.Second):
			s.Stop()
		}
	}
}

func checkAddrs(listen, adminListen string, plaintext bool) error {
	if !transport.IsLoopback(adminListen) {
		return fmt.Errorf("admin listener %s must be a loopback address", adminListen)
	}
	if plaintext && !transport.IsLoopback(listen) {
		return fmt.Errorf("plaintext is allowed only on a loopback address, not %s", listen)
	}
	return nil
}

// listeners opens the public and admin listeners; the admin one must be on
// loopback. It loads or creates the TLS certificate unless plaintext.
func listeners(dir, listen, adminListen string, plaintext bool) (pub, admin net.Listener, cert *tls.Certificate, err error) {
	if err := checkAddrs(listen, adminListen, plaintext); err != nil {
		return nil, nil, nil, err
	}
	if !plaintext {
		host, _, _ := net.SplitHostPort(listen)
		c, _, _, err := transport.LoadOrCreateCert(dir, host)
		if err != nil {
			return nil, nil, nil, err
		}
		cert = &c
	}
	if pub, err = net.Listen("tcp", listen); err != nil {
		return nil, nil, nil, err
	}
	if admin, err = net.Listen("tcp", adminListen); err != nil {
		pub.Close()
		return nil, nil, nil, err
	}
	return pub, admin, cert, nil
}

// Close stops serving, then closes the store.
func (n *Bank) Close() error {
	n.stop()
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
	Catalogue   string // the till's catalogue directory (merchant.LoadCatalogue); "" for none
	Now         func() time.Time
	Log         *slog.Logger
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
	conn, err := transport.Dial(cfg.BankAddr, cfg.BankTLS)
	if err != nil {
		return nil, err
	}
	m, err := merchant.Open(ctx, merchant.Config{
		Dir: cfg.Dir, Account: cfg.Account, Bank: pb.NewBankClient(conn), Now: cfg.Now, Log: cfg.Log, Catalogue: cfg.Catalogue,
	})
	if err != nil {
		conn.Close()
		return nil, err
	}
	n := &Merchant{Merchant: m, bankConn: conn}
	err = n.start(cfg.Dir, cfg.Listen, cfg.AdminListen, cfg.Plaintext, cfg.Log,
		func(s *grpc.Server) { pb.RegisterMerchantServer(s, m.PublicServer()) },
		func(s *grpc.Server) { pb.RegisterMerchantAdminServer(s, m.AdminServer()) })
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
