package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/cmd/internal/transport"
	"github.com/blindbank/blindbank/merchant"
	pb "github.com/blindbank/blindbank/proto"
)

// testCA is a certificate authority for tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // its certificate, PEM
}

func newCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	file := filepath.Join(t.TempDir(), name+".pem")
	writePEM(t, file, "CERTIFICATE", der)
	return &testCA{cert: cert, key: key, file: file}
}

// issue writes a leaf certificate and key signed by the CA into dir as
// NAME.crt and NAME.key: a server certificate for loopback, or a client one.
func (ca *testCA) issue(t *testing.T, dir, name string, client bool) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", keyDER)
	return certFile, keyFile
}

// writePEM replaces path atomically (a temporary file renamed over it), as
// certificate tooling does.
func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// startTLSEnv starts a bank with the shared test keys and the given TLS
// options.
func startTLSEnv(t *testing.T, o TLSOptions) *env {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, bank.KeysFile), testKeys(t), 0o600); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, clock: newClock(), dir: dir}
	b, err := StartBank(BankConfig{Dir: dir, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Keys: bank.KeyConfig{Currency: "EUR"}, Now: e.clock.Now, TLS: o})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	e.bank = b
	e.ks, _ = b.Bank.KeySet()
	return e
}

// deposit calls Deposit with an empty request: past the client
// certificate check it fails on the request (InvalidArgument).
func deposit(t *testing.T, addr string, c transport.ClientConfig) error {
	t.Helper()
	conn, err := transport.Dial(addr, c)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = pb.NewBankClient(conn).Deposit(ctx, &pb.DepositRequest{})
	return err
}

func getKeys(t *testing.T, addr string, c transport.ClientConfig) error {
	t.Helper()
	conn, err := transport.Dial(addr, c)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = pb.NewBankClient(conn).GetKeys(ctx, &pb.GetKeysRequest{})
	return err
}

// TestMerchantMTLS: with a client CA, the bank's merchant calls need a
// certificate from it (over real TLS on loopback) while wallets need none;
// a certificate from another CA is refused in the handshake; and a merchant
// node presenting a good certificate takes a payment end to end and
// refunds part of it.
func TestMerchantMTLS(t *testing.T) {
	ctx := context.Background()
	good, other := newCA(t, "merchants"), newCA(t, "elsewhere")
	certs := t.TempDir()
	goodCert, goodKey := good.issue(t, certs, "shop", true)
	badCert, badKey := other.issue(t, certs, "intruder", true)

	e := startTLSEnv(t, TLSOptions{ClientCAFile: good.file})
	if e.bank.ClientAuth != transport.ClientCertMethods {
		t.Fatalf("client auth %v, want merchant calls only", e.bank.ClientAuth)
	}
	trust := transport.ClientConfig{CAFile: e.bank.CertFile}
	withGood := transport.ClientConfig{CAFile: e.bank.CertFile, CertFile: goodCert, KeyFile: goodKey}
	withBad := transport.ClientConfig{CAFile: e.bank.CertFile, CertFile: badCert, KeyFile: badKey}

	if err := deposit(t, e.bank.Addr, trust); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("deposit without a client certificate: %v, want Unauthenticated", err)
	}
	if err := deposit(t, e.bank.Addr, withGood); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("deposit with a certificate from the CA: %v, want it past the check (InvalidArgument)", err)
	}
	if err := deposit(t, e.bank.Addr, withBad); status.Code(err) != codes.Unavailable {
		t.Fatalf("deposit with a certificate from another CA: %v, want the handshake refused", err)
	}
	// Wallet calls need no certificate.
	if err := getKeys(t, e.bank.Addr, trust); err != nil {
		t.Fatalf("wallet call without a certificate: %v", err)
	}
	if err := getKeys(t, e.bank.Addr, withGood); err != nil {
		t.Fatalf("wallet call with a certificate: %v", err)
	}

	// A whole payment through a merchant node that presents its certificate,
	// and one through a merchant without one, refused at the deposit.
	admin, err := transport.DialAdmin(e.bank.AdminAddr, e.bank.Token)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	e.admin = pb.NewBankAdminClient(admin)
	paid := e.startMerchantWith("shop", t.TempDir(), withGood)
	unpaid := e.startMerchantWith("no-cert shop", t.TempDir(), trust)
	bankc := e.dialBank()
	w := e.newWallet(t.TempDir(), "EUR:10.00")
	defer w.Close()
	if _, err := w.Withdraw(ctx, bankc, mustAmount(t, "EUR:2.00"), nil); err != nil {
		t.Fatal(err)
	}
	order := paid.order(t, "EUR:0.50")
	if _, err := w.Pay(ctx, bankc, paid.client, paid.node.Addr, order, nil); err != nil {
		t.Fatalf("payment through a merchant with a client certificate: %v", err)
	}
	if got := e.balance(paid.account); got != "EUR:0.50" {
		t.Fatalf("merchant balance %s", got)
	}
	// Refunds need the certificate too, and the merchant node presents it.
	if _, err := paid.admin.RefundOrder(ctx, &pb.RefundOrderRequest{OrderId: order, Amount: "EUR:0.20"}); err != nil {
		t.Fatalf("refund through a merchant with a client certificate: %v", err)
	}
	if got := e.balance(paid.account); got != "EUR:0.30" {
		t.Fatalf("merchant balance %s after the refund", got)
	}
	_, err = w.Pay(ctx, bankc, unpaid.client, unpaid.node.Addr, unpaid.order(t, "EUR:0.50"), nil)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("payment through a merchant without a certificate: %v", err)
	}
	if got := e.balance(unpaid.account); got != "EUR:0.00" {
		t.Fatalf("merchant without a certificate was paid: %s", got)
	}
}

// TestMerchantCallsNeedCertificate: with client_auth "merchants", every
// public call that moves a merchant's money (Deposit, SubmitCheck and
// Refund, which debits the merchant's account) is refused without a client
// certificate before its request is looked at, and every other call of the
// Bank service stays open to wallets. It walks the service's method list,
// so a call added later is classified here too.
func TestMerchantCallsNeedCertificate(t *testing.T) {
	e := startTLSEnv(t, TLSOptions{ClientCAFile: newCA(t, "merchants").file})
	conn, err := transport.Dial(e.bank.Addr, transport.ClientConfig{CAFile: e.bank.CertFile}) // no client certificate
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	merchantOnly := map[string]bool{"Deposit": true, "SubmitCheck": true, "Refund": true}
	for _, m := range pb.Bank_ServiceDesc.Methods {
		method := "/" + pb.Bank_ServiceDesc.ServiceName + "/" + m.MethodName
		// An empty request: past the certificate check it is refused as
		// malformed or unknown, never as unauthenticated.
		err := conn.Invoke(ctx, method, &emptypb.Empty{}, &emptypb.Empty{})
		if refused := status.Code(err) == codes.Unauthenticated; refused != merchantOnly[m.MethodName] {
			t.Errorf("%s without a certificate: %v; want refused for want of one: %v", m.MethodName, err, merchantOnly[m.MethodName])
		}
	}
}

// startMerchantWith starts a merchant node that dials the bank with tlsc.
func (e *env) startMerchantWith(name, dir string, tlsc transport.ClientConfig) *shop {
	e.t.Helper()
	pub, err := merchant.Init(dir)
	if err != nil {
		e.t.Fatal(err)
	}
	acct := e.openAccount(name, pub, true)
	m, err := StartMerchant(context.Background(), MerchantConfig{
		Dir: dir, BankAddr: e.bank.Addr, BankTLS: tlsc,
		Account: acct, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Now: e.clock.Now,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { m.Close() })
	adminConn, err := transport.DialAdmin(m.AdminAddr, m.Token)
	if err != nil {
		e.t.Fatal(err)
	}
	conn, err := transport.Dial(m.Addr, transport.ClientConfig{CAFile: m.CertFile})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { adminConn.Close(); conn.Close() })
	return &shop{node: m, account: acct, admin: pb.NewMerchantAdminClient(adminConn), client: pb.NewMerchantClient(conn)}
}

// TestClientCertAll: every connection needs a certificate, wallet calls
// included.
func TestClientCertAll(t *testing.T) {
	good, other := newCA(t, "clients"), newCA(t, "elsewhere")
	certs := t.TempDir()
	goodCert, goodKey := good.issue(t, certs, "client", true)
	badCert, badKey := other.issue(t, certs, "intruder", true)
	e := startTLSEnv(t, TLSOptions{ClientCAFile: good.file, ClientAuth: transport.ClientCertAll})
	trust := transport.ClientConfig{CAFile: e.bank.CertFile}
	if err := getKeys(t, e.bank.Addr, trust); status.Code(err) != codes.Unavailable {
		t.Fatalf("no certificate: %v, want the handshake refused", err)
	}
	trust.CertFile, trust.KeyFile = badCert, badKey
	if err := getKeys(t, e.bank.Addr, trust); status.Code(err) != codes.Unavailable {
		t.Fatalf("another CA's certificate: %v, want the handshake refused", err)
	}
	trust.CertFile, trust.KeyFile = goodCert, goodKey
	if err := getKeys(t, e.bank.Addr, trust); err != nil {
		t.Fatalf("good certificate: %v", err)
	}
}

// TestAdminMTLS: an admin listener with a client CA serves TLS, refuses
// clients without a certificate from that CA (gRPC and /metrics alike), and
// still wants the token.
func TestAdminMTLS(t *testing.T) {
	ctx := context.Background()
	admins, other := newCA(t, "admins"), newCA(t, "elsewhere")
	certs := t.TempDir()
	goodCert, goodKey := admins.issue(t, certs, "operator", true)
	badCert, badKey := other.issue(t, certs, "intruder", true)
	e := startTLSEnv(t, TLSOptions{AdminClientCAFile: admins.file})
	if !e.bank.AdminTLS {
		t.Fatal("admin listener does not report TLS")
	}
	open := func(c transport.ClientConfig, token string) error {
		conn, err := transport.DialAdminTLS(e.bank.AdminAddr, token, c)
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		_, err = pb.NewBankAdminClient(conn).OpenAccount(ctx, &pb.OpenAccountRequest{Name: "x", PublicKey: pub})
		return err
	}
	good := transport.ClientConfig{CAFile: e.bank.CertFile, CertFile: goodCert, KeyFile: goodKey}
	if err := open(good, e.bank.Token); err != nil {
		t.Fatalf("admin call with a good certificate: %v", err)
	}
	if err := open(good, strings.Repeat("0", 64)); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("admin call with a good certificate and a wrong token: %v", err)
	}
	if err := open(transport.ClientConfig{CAFile: e.bank.CertFile}, e.bank.Token); status.Code(err) != codes.Unavailable {
		t.Fatalf("admin call without a certificate: %v, want the handshake refused", err)
	}
	if err := open(transport.ClientConfig{CAFile: e.bank.CertFile, CertFile: badCert, KeyFile: badKey}, e.bank.Token); status.Code(err) != codes.Unavailable {
		t.Fatalf("admin call with another CA's certificate: %v", err)
	}
	if err := open(transport.ClientConfig{}, e.bank.Token); status.Code(err) != codes.Unavailable {
		t.Fatalf("plaintext admin call to a TLS listener: %v", err)
	}

	metrics := func(c transport.ClientConfig) (int, error) {
		client, base, err := transport.AdminHTTP(e.bank.AdminAddr, c)
		if err != nil {
			return 0, err
		}
		defer client.CloseIdleConnections()
		req, _ := http.NewRequest("GET", base+"/metrics", nil)
		transport.SetToken(req, e.bank.Token)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == 200 && !strings.Contains(string(body), `blindbank_tls_cert_expiry_timestamp_seconds{listener="admin"}`) {
			t.Errorf("metrics lack the admin certificate's expiry")
		}
		return resp.StatusCode, nil
	}
	if code, err := metrics(good); err != nil || code != 200 {
		t.Fatalf("metrics with a good certificate: %d %v", code, err)
	}
	if _, err := metrics(transport.ClientConfig{CAFile: e.bank.CertFile}); err == nil {
		t.Fatal("metrics without a client certificate answered")
	}

	// Off loopback is allowed only with client certificates.
	if err := checkAddrs("127.0.0.1:1", "0.0.0.0:7444", false, TLSOptions{}); err == nil {
		t.Fatal("an admin listener off loopback without client certificates was allowed")
	}
	if err := checkAddrs("127.0.0.1:1", "0.0.0.0:7444", false, TLSOptions{AdminClientCAFile: admins.file}); err != nil {
		t.Fatal(err)
	}
}

// TestTLSSettingsRefused: inconsistent settings are refused before
// anything starts.
func TestTLSSettingsRefused(t *testing.T) {
	ca := newCA(t, "ca")
	for name, c := range map[string]struct {
		o         TLSOptions
		plaintext bool
	}{
		"auth without a CA":      {o: TLSOptions{ClientAuth: transport.ClientCertAll}},
		"client CA in plaintext": {o: TLSOptions{ClientCAFile: ca.file}, plaintext: true},
		"cert without key":       {o: TLSOptions{CertFile: ca.file}},
		"missing CA file":        {o: TLSOptions{ClientCAFile: filepath.Join(t.TempDir(), "none.pem")}},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			os.WriteFile(filepath.Join(dir, bank.KeysFile), testKeys(t), 0o600)
			b, err := StartBank(BankConfig{Dir: dir, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Plaintext: c.plaintext, Keys: bank.KeyConfig{Currency: "EUR"}, TLS: c.o})
			if err == nil {
				b.Close()
				t.Fatal("started")
			}
		})
	}
	dir := t.TempDir()
	if _, err := StartMerchant(context.Background(), MerchantConfig{Dir: dir, BankAddr: "127.0.0.1:1", BankTLS: transport.ClientConfig{Plaintext: true},
		Account: 1000, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0",
		TLS: TLSOptions{ClientCAFile: ca.file, ClientAuth: transport.ClientCertMethods}}); err == nil {
		t.Fatal("a merchant took client certificates for merchant calls")
	}
}

// fingerprintOf dials addr with TLS and returns the certificate it serves.
func fingerprintOf(t *testing.T, addr string, roots *x509.CertPool) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return transport.Fingerprint(conn.ConnectionState().PeerCertificates[0].Raw)
}

// TestCertificateRotation: the bank's certificate and client CA are
// replaced on disk while it runs. New connections see the new ones at once;
// a connection opened before keeps working, and calls in flight meanwhile
// all succeed; a half-written pair (certificate without its key) is ignored
// until the key arrives.
func TestCertificateRotation(t *testing.T) {
	ctx := context.Background()
	serverCA, clientsA, clientsB := newCA(t, "server-ca"), newCA(t, "clients-a"), newCA(t, "clients-b")
	live, staging := t.TempDir(), t.TempDir()
	certFile, keyFile := serverCA.issue(t, live, "bank", false)
	clientCA := filepath.Join(live, "clients.pem")
	copyFile(t, clientsA.file, clientCA)
	certs := t.TempDir()
	aCert, aKey := clientsA.issue(t, certs, "shop-a", true)
	bCert, bKey := clientsB.issue(t, certs, "shop-b", true)

	e := startTLSEnv(t, TLSOptions{CertFile: certFile, KeyFile: keyFile, ClientCAFile: clientCA})
	roots := x509.NewCertPool()
	roots.AddCert(serverCA.cert)
	first := fingerprintOf(t, e.bank.Addr, roots)
	if first != e.bank.Fingerprint || e.bank.CertFile != certFile {
		t.Fatalf("serving %s, reported %s (%s)", first, e.bank.Fingerprint, e.bank.CertFile)
	}
	trust := transport.ClientConfig{CAFile: serverCA.file}
	old, err := transport.Dial(e.bank.Addr, trust)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	oldc := pb.NewBankClient(old)
	if _, err := oldc.GetKeys(ctx, &pb.GetKeysRequest{}); err != nil {
		t.Fatal(err)
	}

	// Calls keep flowing on the old connection throughout.
	var (
		calls, failures atomic.Int64
		stop            = make(chan struct{})
		wg              sync.WaitGroup
	)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := oldc.GetKeys(ctx, &pb.GetKeysRequest{}); err != nil {
					failures.Add(1)
					t.Errorf("call on the old connection during rotation: %v", err)
				}
				calls.Add(1)
			}
		})
	}

	// The new certificate arrives: first the certificate alone.
	newCert, newKey := serverCA.issue(t, staging, "bank", false)
	copyFile(t, newCert, certFile)
	if got := fingerprintOf(t, e.bank.Addr, roots); got != first {
		t.Fatal("a certificate without its key was served")
	}
	copyFile(t, newKey, keyFile)
	second := fingerprintOf(t, e.bank.Addr, roots)
	if second == first {
		t.Fatal("the replaced certificate is not served to a new connection")
	}
	if e.bank.CurrentFingerprint() != second {
		t.Fatalf("CurrentFingerprint %s, serving %s", e.bank.CurrentFingerprint(), second)
	}
	if err := getKeys(t, e.bank.Addr, trust); err != nil {
		t.Fatalf("new connection after rotation: %v", err)
	}

	// The client CA is rotated: merchants of the new CA are let in, the old
	// CA's are refused.
	withA := transport.ClientConfig{CAFile: serverCA.file, CertFile: aCert, KeyFile: aKey}
	withB := transport.ClientConfig{CAFile: serverCA.file, CertFile: bCert, KeyFile: bKey}
	if err := deposit(t, e.bank.Addr, withA); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("old CA before its rotation: %v", err)
	}
	copyFile(t, clientsB.file, clientCA)
	if err := deposit(t, e.bank.Addr, withB); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("new CA after rotation: %v", err)
	}
	if err := deposit(t, e.bank.Addr, withA); status.Code(err) != codes.Unavailable {
		t.Fatalf("old CA after rotation: %v, want the handshake refused", err)
	}

	close(stop)
	wg.Wait()
	if calls.Load() == 0 || failures.Load() != 0 {
		t.Fatalf("%d calls on the old connection, %d failed", calls.Load(), failures.Load())
	}
	if _, err := oldc.GetKeys(ctx, &pb.GetKeysRequest{}); err != nil {
		t.Fatalf("old connection after rotation: %v", err)
	}
	t.Logf("%d calls on the old connection during rotation", calls.Load())
}

// copyFile replaces dst by src's contents, atomically.
func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}
