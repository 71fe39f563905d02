package merchantdcmd

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/cmd/internal/cli"
	pb "github.com/blindbank/blindbank/proto"
)

// logAdmin is a merchant's admin service whose VerifyLog answers err (a
// status), or resp.
type logAdmin struct {
	pb.UnimplementedMerchantAdminServer
	resp *pb.VerifyLogResponse
	err  error
}

func (a *logAdmin) VerifyLog(context.Context, *pb.VerifyLogRequest) (*pb.VerifyLogResponse, error) {
	return a.resp, a.err
}

// serveAdmin serves a on loopback and returns the flags that reach it.
func serveAdmin(t *testing.T, a pb.MerchantAdminServer) []string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterMerchantAdminServer(srv, a)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	tok := filepath.Join(t.TempDir(), "admin.token")
	if err := os.WriteFile(tok, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"--admin", lis.Addr().String(), "--token-file", tok}
}

func runMerchantd(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	env := &cli.Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb}
	code := cli.Run(context.Background(), Command(), env, args)
	return code, out.String(), errb.String()
}

// TestVerifyLogMismatchWritesCheckpoint: on a mismatch, "merchantd
// verify-log --checkpoint-out FILE" writes the checkpoint the merchant
// sent with it, the evidence, and fails; after a fork (no checkpoint sent)
// it writes nothing.
func TestVerifyLogMismatchWritesCheckpoint(t *testing.T) {
	signed := []byte("blindbank.example/log\n5\nAAAA\n\n— bank sig\n")
	st, err := status.New(codes.FailedPrecondition, "merchant: order o-1: the bank's audit log does not match its answer").
		WithDetails(&pb.VerifyLogResponse{LogSize: 5, Root: make([]byte, 32), Verified: 1, Checkpoint: signed})
	if err != nil {
		t.Fatal(err)
	}
	flags := serveAdmin(t, &logAdmin{err: st.Err()})
	out := filepath.Join(t.TempDir(), "shop.cp")
	code, _, errs := runMerchantd(append([]string{"verify-log", "--checkpoint-out", out}, flags...)...)
	if code != 1 || !strings.Contains(errs, "does not match") || !strings.Contains(errs, "the signed checkpoint is in "+out) {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if got, err := os.ReadFile(out); err != nil || !bytes.Equal(got, signed) {
		t.Fatalf("%s holds %q (%v), want the checkpoint sent", out, got, err)
	}

	// A fork: the error holds both checkpoints; none is written.
	fork := serveAdmin(t, &logAdmin{err: status.Error(codes.FailedPrecondition, "auditlog: the log is forked")})
	out2 := filepath.Join(t.TempDir(), "fork.cp")
	code, _, errs = runMerchantd(append([]string{"verify-log", "--checkpoint-out", out2}, fork...)...)
	if code != 1 || !strings.Contains(errs, "no checkpoint written to "+out2) {
		t.Fatalf("fork: exit %d: %s", code, errs)
	}
	if _, err := os.Stat(out2); !os.IsNotExist(err) {
		t.Fatalf("a checkpoint was written after a fork: %v", err)
	}
}

// TestVerifyLogJSON: merchantd verify-log --json has the wallet's fields
// (cli.LogCheck), the root in hex.
func TestVerifyLogJSON(t *testing.T) {
	root := bytes.Repeat([]byte{0xab}, 32)
	flags := serveAdmin(t, &logAdmin{resp: &pb.VerifyLogResponse{LogSize: 7, Root: root, Verified: 2, Waiting: 1, Checkpoint: []byte("cp\n")}})
	code, stdout, errs := runMerchantd(append([]string{"verify-log", "--json"}, flags...)...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	want := map[string]any{"log_size": 7.0, "root": hex.EncodeToString(root), "verified": 2.0, "waiting": 1.0, "adopted_key_set": false}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// TestVerifyLogAdoptedKeySet: a merchant that took a newer logged key set
// from the checkpoint (the response's adopted_key_set) says so, in text
// and with --json; one that did not says nothing of it.
func TestVerifyLogAdoptedKeySet(t *testing.T) {
	root := bytes.Repeat([]byte{0xab}, 32)
	for _, adopted := range []bool{false, true} {
		flags := serveAdmin(t, &logAdmin{resp: &pb.VerifyLogResponse{LogSize: 7, Root: root, Verified: 2, Checkpoint: []byte("cp\n"), AdoptedKeySet: adopted}})
		code, stdout, errs := runMerchantd(append([]string{"verify-log"}, flags...)...)
		if code != 0 || strings.Contains(stdout, cli.AdoptedKeySetNote) != adopted {
			t.Errorf("adopted %v: exit %d: %s%s", adopted, code, stdout, errs)
		}
		code, stdout, errs = runMerchantd(append([]string{"verify-log", "--json"}, flags...)...)
		var got cli.LogCheck
		if err := json.Unmarshal([]byte(stdout), &got); code != 0 || err != nil || got.AdoptedKeySet != adopted {
			t.Errorf("adopted %v, --json: exit %d (%v): %s%s", adopted, code, err, stdout, errs)
		}
	}
}

// TestVerifyLogUnreachable: when the merchant is not running, or cannot
// reach the bank, nothing was checked: verify-log fails without saying the
// log "does not check out", which is a finding against the bank.
func TestVerifyLogUnreachable(t *testing.T) {
	// No merchant listening.
	flags := noMerchant(t)
	code, _, errs := runMerchantd(append([]string{"verify-log"}, flags...)...)
	if code != 1 || strings.Contains(errs, "does not check out") || !strings.Contains(errs, "not checked") {
		t.Fatalf("merchant not running: exit %d: %s", code, errs)
	}

	// The merchant runs but cannot reach the bank.
	down := serveAdmin(t, &logAdmin{err: status.Error(codes.Unavailable, "merchant: the bank is unreachable")})
	code, _, errs = runMerchantd(append([]string{"verify-log"}, down...)...)
	if code != 1 || strings.Contains(errs, "does not check out") || !strings.Contains(errs, "not checked") {
		t.Fatalf("bank unreachable: exit %d: %s", code, errs)
	}

	// A mismatch still says so.
	bad := serveAdmin(t, &logAdmin{err: status.Error(codes.FailedPrecondition, "merchant: order o-1: the bank's audit log does not match its answer")})
	code, _, errs = runMerchantd(append([]string{"verify-log"}, bad...)...)
	if code != 1 || !strings.Contains(errs, "does not check out") {
		t.Fatalf("mismatch: exit %d: %s", code, errs)
	}
}

// noMerchant returns admin flags that reach no merchant: a port free a
// moment ago, and a token file.
func noMerchant(t *testing.T) []string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	flags := serveAdmin(t, &logAdmin{}) // for its token file
	flags[1] = addr
	return flags
}

// TestSettlementUnreachable: a statement the merchant could not check (it
// is not running) is "not checked", not a statement that "does not check
// out".
func TestSettlementUnreachable(t *testing.T) {
	flags := noMerchant(t)
	stmt := filepath.Join(t.TempDir(), "shop.stmt")
	if err := os.WriteFile(stmt, []byte("statement"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runMerchantd(append(append([]string{"settlement"}, flags...), stmt)...)
	if code != 1 || strings.Contains(errs, "does not check out") || !strings.Contains(errs, "not checked") {
		t.Fatalf("merchant not running: exit %d: %s", code, errs)
	}
}
