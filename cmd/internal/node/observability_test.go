package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"google.golang.org/grpc/health/grpc_health_v1"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/cmd/internal/transport"
	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
	pb "github.com/blindbank/blindbank/proto"
)

// TestObservability: health on both listeners, reflection on the public
// one, and Prometheus metrics at /metrics on the admin listener behind the
// token, counting what the bank did.
func TestObservability(t *testing.T) {
	ctx := context.Background()
	e := startEnv(t)
	bankc := e.dialBank()
	e.rawCoin(t, bankc, "EUR:0.01") // one CS coin issued

	conn, err := transport.Dial(e.bank.Addr, transport.ClientConfig{Pin: e.bank.Fingerprint})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	h, err := grpc_health_v1.NewHealthClient(conn).Check(ctx, &grpc_health_v1.HealthCheckRequest{})
	if err != nil || h.Status != grpc_health_v1.HealthCheckResponse_SERVING {
		t.Fatalf("public health: %v %v", h, err)
	}
	admin, err := transport.DialAdmin(e.bank.AdminAddr, e.bank.Token)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if h, err := grpc_health_v1.NewHealthClient(admin).Check(ctx, &grpc_health_v1.HealthCheckRequest{}); err != nil || h.Status != grpc_health_v1.HealthCheckResponse_SERVING {
		t.Fatalf("admin health: %v %v", h, err)
	}

	stream, err := rpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.Name)
	}
	if !strings.Contains(strings.Join(names, " "), "blindbank.v1.Bank") {
		t.Fatalf("reflection lists %v", names)
	}

	get := func(token string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+e.bank.AdminAddr+"/metrics", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r.StatusCode, string(b)
	}
	if code, _ := get(""); code != http.StatusUnauthorized {
		t.Fatalf("metrics without the token: %d", code)
	}
	if code, _ := get("wrong"); code != http.StatusUnauthorized {
		t.Fatalf("metrics with a wrong token: %d", code)
	}
	code, body := get(e.bank.Token)
	if code != http.StatusOK {
		t.Fatalf("metrics: %d", code)
	}
	for _, want := range []string{
		`blindbank_coins_issued_total{cipher="cs",value="EUR:0.01"} 1`,
		`blindbank_rpc_requests_total{code="OK",method="/blindbank.v1.Bank/Withdraw"} 1`,
		`blindbank_commit_batch_ops_count`,
		`blindbank_store_bytes`,
		`blindbank_tls_cert_expiry_timestamp_seconds{listener="public"}`,
		`blindbank_backup_last_success_timestamp_seconds 0`,
		fmt.Sprintf("blindbank_keys_issuable_until_timestamp_seconds %s", strconv.FormatFloat(float64(bank.KeySetWithdrawableUntil(e.ks, e.clock.Now()).Unix()), 'g', -1, 64)),
		`go_goroutines`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestRateLimits: an account that asks too fast is refused with
// ResourceExhausted, before any signing; requests whose signature does not
// verify are refused as such and use none of the account's rate (anyone
// can name an account). A request refused for good is answered from its
// recorded refusal when sent again, before the rate, and uses none of it.
func TestRateLimits(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, bank.KeysFile), testKeys(t), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := StartBank(BankConfig{Dir: dir, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Keys: bank.KeyConfig{Currency: "EUR"}, Limits: RateLimits{PerAccount: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	conn, err := transport.Dial(b.Addr, transport.ClientConfig{Pin: b.Fingerprint})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	bankc := pb.NewBankClient(conn)
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	acct, err := b.Bank.OpenAccount(context.Background(), "rushed", key.Public().(ed25519.PublicKey), false)
	if err != nil {
		t.Fatal(err)
	}
	ks, _ := b.Bank.KeySet()
	// request is a new withdraw request (its own nonce) for one coin.
	request := func() (req *ecash.WithdrawRequest, amount ecash.Amount) {
		req = &ecash.WithdrawRequest{Account: acct, CreatedAt: time.Now(), Planchets: []ecash.Planchet{{Denom: ks.Denominations[0].ID, Blinded: []byte{1}}}}
		rand.Read(req.Nonce[:])
		amount, err := ks.WithdrawAmount(req)
		if err != nil {
			t.Fatal(err)
		}
		return req, amount
	}
	send := func(body, sig []byte) codes.Code {
		_, err := bankc.Withdraw(context.Background(), &pb.WithdrawRequest{Body: body, AccountSig: sig})
		return status.Code(err)
	}
	// Fewer forgeries than lock the account for this address: the
	// signed requests below are refused for the funds, not the lock
	// (which is not recorded, and so charges the rate at every send).
	forged, _ := request()
	seen := map[codes.Code]int{}
	for range bank.MaxAuthFailures - 1 {
		seen[send(forged.Body(), make([]byte, 64))]++
	}
	if seen[codes.Unauthenticated] != bank.MaxAuthFailures-1 {
		t.Fatalf("forged requests: codes %v", seen)
	}
	// Burst 2 at 1/s. The first request reaches the account and is
	// refused for good (its planchet is no blinded message), recorded;
	// sent again it is answered from the record, using none of the rate;
	// so the second new request is decided too, and the next new ones
	// are refused for the rate.
	first, amount := request()
	firstSig := ecash.SignWithdraw(key, first, amount)
	_, refusal := bankc.Withdraw(context.Background(), &pb.WithdrawRequest{Body: first.Body(), AccountSig: firstSig})
	if status.Code(refusal) != codes.InvalidArgument || !strings.Contains(refusal.Error(), "malformed") {
		t.Fatalf("the first signed request: %v, want its refusal as malformed", refusal)
	}
	again := func() {
		t.Helper()
		_, err := bankc.Withdraw(context.Background(), &pb.WithdrawRequest{Body: first.Body(), AccountSig: firstSig})
		if status.Code(err) != status.Code(refusal) || status.Convert(err).Message() != status.Convert(refusal).Message() {
			t.Fatalf("the refused request sent again: %v, want its recorded refusal", err)
		}
	}
	for range 5 {
		again()
	}
	seen = map[codes.Code]int{}
	for range 4 {
		req, amount := request()
		seen[send(req.Body(), ecash.SignWithdraw(key, req, amount))]++
	}
	if seen[codes.InvalidArgument] != 1 || seen[codes.ResourceExhausted] != 3 {
		t.Fatalf("new signed requests after the first: codes %v, want 1 InvalidArgument (the rest of the burst), 3 ResourceExhausted", seen)
	}
	again() // the rate used up

}

// TestProfiles: CPU and heap profiles on the admin listener, behind the
// token, with the duration bounded and one CPU profile at a time.
func TestProfiles(t *testing.T) {
	e := startEnv(t)
	get := func(path, token string) (int, []byte) {
		req, _ := http.NewRequest("GET", "http://"+e.bank.AdminAddr+path, nil)
		if token != "" {
			transport.SetToken(req, token)
		}
		r, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return 0, nil
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r.StatusCode, b
	}
	isProfile := func(b []byte) bool { return len(b) > 2 && b[0] == 0x1f && b[1] == 0x8b } // gzipped protobuf
	for _, path := range []string{ProfilePath + "?seconds=1", HeapPath} {
		if code, _ := get(path, ""); code != http.StatusUnauthorized {
			t.Errorf("%s without the token: %d", path, code)
		}
	}
	for _, secs := range []string{"0", "301", "1.5", "x"} {
		if code, _ := get(ProfilePath+"?seconds="+secs, e.bank.Token); code != http.StatusBadRequest {
			t.Errorf("seconds=%s: %d, want 400", secs, code)
		}
	}
	if code, b := get(HeapPath, e.bank.Token); code != http.StatusOK || !isProfile(b) {
		t.Errorf("heap profile: %d, %d bytes", code, len(b))
	}

	first := make(chan int, 1)
	var firstBody []byte
	go func() {
		code, b := get(ProfilePath+"?seconds=2", e.bank.Token)
		firstBody = b
		first <- code
	}()
	time.Sleep(500 * time.Millisecond)
	second, _ := get(ProfilePath+"?seconds=1", e.bank.Token)
	code := <-first
	if code == http.StatusConflict && second == http.StatusConflict {
		t.Skip("the CPU profiler is in use by the test run itself")
	}
	if code != http.StatusOK || !isProfile(firstBody) {
		t.Fatalf("CPU profile: %d, %d bytes", code, len(firstBody))
	}
	if second != http.StatusConflict {
		t.Fatalf("a second CPU profile while the first runs: %d, want 409", second)
	}
}

// TestMerchantJunkLeavesCustomerRate: the merchant a customer gave one
// (not yet decided) goods EPO can resubmit it with an endorsement whose
// sealed key does not open, as often as it likes: each is refused with an
// error (nothing recorded), yet each is charged to the customer's
// per-account rate, which the customer's own withdrawals, statements and
// payment orders share.
func TestMerchantJunkLeavesCustomerRate(t *testing.T) {
	e := startEnv(t)
	e.bank.Bank.LimitAccounts(bank.NewRateLimiter(0.001, 3, 1000))
	bankc := e.dialBank()
	c := e.newParty(t, "carol", false, "EUR:20.00")
	m := e.newParty(t, "bookshop", true, "")
	s := e.newSale(t, c, m, "EUR:1.00")
	for i := range 3 {
		end := &echeck.Endorsement{EPO: s.epo.Encode(), MerchantAccount: m.acct, Memo: "junk", SealedKey: make([]byte, 80)}
		end.MerchantSig = ecash.SignBody(m.key, end.Body())
		_, err := submit(bankc, end.Encode())
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("junk endorsement %d: %v, want refused", i, err)
		}
	}
	// The customer's own, honest, operations now.
	other := e.newSale(t, c, m, "EUR:1.00")
	if _, err := submit(bankc, e.endorse(t, other, m, other.key)); err != nil {
		t.Fatalf("the customer's own order after the merchant's junk: %v", err)
	}
	req := echeck.NewStatementRequest(c.acct, e.clock.Now().Add(-time.Hour), e.clock.Now(), e.clock.Now(), c.key)
	if _, err := bankc.GetStatement(context.Background(), &pb.GetStatementRequest{Request: req.Encode()}); err != nil {
		t.Fatalf("the customer's statement after the merchant's junk: %v", err)
	}
}
