package node

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
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
		Store: dsn, HealthPoll: 100 * time.Millisecond})
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
	// The probe's own session sees the setting at once; the pool's keep
	// theirs until they end.
	waitHealth(healthpb.HealthCheckResponse_NOT_SERVING)
	if v := gauge(t, n.Registry, "blindbank_store_serving"); v != 0 {
		t.Errorf("blindbank_store_serving = %g while the probe fails; want 0", v)
	}
	var pids []int32
	if err := db.QueryRow(ctx, `SELECT coalesce(array_agg(pid), '{}') FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&pids); err != nil {
		t.Fatal(err)
	}
	exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var left int
		if err := db.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)`, pids).Scan(&left); err != nil {
			t.Fatal(err)
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of the bank's sessions still there 10 s after they were ended", left)
		}
	}
	if _, err := bankc.DepositStatus(ctx, unpaid); status.Code(err) != codes.Unavailable || bank.Reason(err) != "STORE_UNAVAILABLE" {
		t.Errorf("DepositStatus while the store is refused: %v (reason %q); want UNAVAILABLE, STORE_UNAVAILABLE", err, bank.Reason(err))
	}

	exec(`DO $$ BEGIN EXECUTE format('ALTER DATABASE %I RESET synchronous_commit', current_database()); END $$`)
	waitHealth(healthpb.HealthCheckResponse_SERVING)
	if v := gauge(t, n.Registry, "blindbank_store_serving"); v != 1 {
		t.Errorf("blindbank_store_serving = %g once the probe passes; want 1", v)
	}
	// The pool's sessions the server ended, if it has not pinged them yet
	// (they were used within the second), fail a call each, then go.
	for i := 0; ; i++ {
		_, err := bankc.DepositStatus(ctx, unpaid)
		if bank.Reason(err) == "NOT_PAID" {
			break
		}
		if bank.Reason(err) != "STORE_UNAVAILABLE" || i == 8 {
			t.Fatalf("DepositStatus %d once the store serves again: %v; want NOT_PAID", i+1, err)
		}
	}
}

// gauge is the value of the unlabelled gauge name in reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no gauge %s", name)
	return 0
}
