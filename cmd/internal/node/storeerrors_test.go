package node

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank/pgstore/pgtest"
	"github.com/blindbank/blindbank/cmd/internal/transport"
	pb "github.com/blindbank/blindbank/proto"
)

// TestStoreErrorsStayInTheLog: with the PostgreSQL ledger down, a public
// caller gets Unavailable and the store's own message ("unreachable, retry
// later") but none of the driver's text, which names the database's socket
// path, user and database; the operator finds that text in the bank's log
// under the call's request id.
func TestStoreErrorsStayInTheLog(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.New(t)
	dsn, err := pg.CreateDatabase(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e := startEnvOn(t, dsn)
	var logs safeBuffer
	e.log = slog.New(slog.NewJSONHandler(&logs, nil))
	e.restartBank(t)
	bankc := e.dialBank()
	id := make([]byte, 32)
	if _, err := bankc.CoinsSpent(ctx, &pb.CoinsSpentRequest{CoinIds: [][]byte{id}}); err != nil {
		t.Fatal(err)
	}
	if err := pg.Crash(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := pg.Restart(); err != nil {
			t.Error(err)
		}
	}()
	secrets := []string{pg.Dir, "user=", "database=", "pgstore:", "pgx", "dial"}
	// The first call finds its pooled connection dead, the next one fails
	// to connect: two different driver errors.
	for _, reqID := range []string{"store-down-1", "store-down-2"} {
		_, err = bankc.CoinsSpent(metadata.AppendToOutgoingContext(ctx, transport.RequestIDKey, reqID), &pb.CoinsSpentRequest{CoinIds: [][]byte{id}})
		st := status.Convert(err)
		t.Logf("wallet sees: code %s, message %q", st.Code(), st.Message())
		if st.Code() != codes.Unavailable {
			t.Fatalf("code %s, want Unavailable", st.Code())
		}
		for _, secret := range secrets {
			if strings.Contains(st.Message(), secret) {
				t.Errorf("the public error leaks %q", secret)
			}
		}
		logged := false
		for _, line := range strings.Split(string(logs.Bytes()), "\n") {
			logged = logged || strings.Contains(line, `"request_id":"`+reqID+`"`) && strings.Contains(line, "pgstore:")
		}
		if !logged {
			t.Errorf("no log line with the driver's error under request id %s:\n%s", reqID, logs.Bytes())
		}
	}
}
