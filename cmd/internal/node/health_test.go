package node

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/pgstore/pgtest"
	"github.com/blindbank/blindbank/cmd/internal/transport"
	pb "github.com/blindbank/blindbank/proto"
)

// TestHealthFollowsTheStore: a replica on PostgreSQL whose database stops
// passing its session checks (here synchronous_commit turned off for the
// database while it runs, its connections ended) reports NOT_SERVING to
// health checks within its poll, so that a load balancer sends the calls
// elsewhere, and answers a call that needs the store UNAVAILABLE with
// STORE_UNAVAILABLE; once the setting is back it reports SERVING and
// serves again. It used to report SERVING throughout.
func TestHealthFollowsTheStore(t *testing.T) {
	ctx := t.Context()
	dsn, err := pgtest.New(t).CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n, err := StartBank(BankConfig{Dir: t.TempDir(), Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Keys: bank.KeyConfig{Currency: "EUR"},
		Store: dsn, HealthPoll: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	conn, err := transport.Dial(n.Addr, transport.ClientConfig{Pin: n.Fingerprint})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	health, bankc := healthpb.NewHealthClient(conn), pb.NewBankClient(conn)
	waitHealth := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			res, err := health.Check(ctx, &healthpb.HealthCheckRequest{})
			if err == nil && res.Status == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("health check %v, %v; want %v within 10s", res.GetStatus(), err, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	unpaid := &pb.DepositStatusRequest{PaymentHash: make([]byte, 32)}
	waitHealth(healthpb.HealthCheckResponse_SERVING)
	if _, err := bankc.DepositStatus(ctx, unpaid); bank.Reason(err) != "NOT_PAID" {
		t.Fatalf("DepositStatus of an unpaid request: %v; want NOT_PAID", err)
	}

	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	exec := func(sql string) {
		t.Helper()
		if _, err := db.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	exec(`DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET synchronous_commit = off', current_database()); END $$`)
	exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`)
	waitHealth(healthpb.HealthCheckResponse_NOT_SERVING)
	if _, err := bankc.DepositStatus(ctx, unpaid); status.Code(err) != codes.Unavailable || bank.Reason(err) != "STORE_UNAVAILABLE" {
		t.Errorf("DepositStatus while the store is refused: %v (reason %q); want UNAVAILABLE, STORE_UNAVAILABLE", err, bank.Reason(err))
	}

	exec(`DO $$ BEGIN EXECUTE format('ALTER DATABASE %I RESET synchronous_commit', current_database()); END $$`)
	waitHealth(healthpb.HealthCheckResponse_SERVING)
	if _, err := bankc.DepositStatus(ctx, unpaid); bank.Reason(err) != "NOT_PAID" {
		t.Errorf("DepositStatus once the store serves again: %v; want NOT_PAID", err)
	}
}
