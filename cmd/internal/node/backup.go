package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/blindbank/blindbank/bank/pebblestore"
	"github.com/blindbank/blindbank/cmd/internal/transport"
)

// BackupPath is the admin listener's HTTP endpoint that backs up a running
// bank's ledger: POST a BackupRequest as JSON, with the admin token; the
// answer is a BackupResult, or an error as {"error": "..."} with status 400
// (bad request), 409 (the target exists, or another backup is running), 501
// (the ledger is in PostgreSQL) or 500.
const BackupPath = "/v1/backup"

// BackupRequest asks for a checkpoint of the ledger.
type BackupRequest struct {
	// To is the directory to write, on the bank's host: an absolute path
	// that must not exist, in a directory that does.
	To string `json:"to"`
}

// BackupResult describes a finished backup.
type BackupResult struct {
	Path     string    `json:"path"`     // the checkpoint directory
	Files    int       `json:"files"`    // files in it
	Bytes    int64     `json:"bytes"`    // their total size
	Accounts int       `json:"accounts"` // accounts in the backed-up ledger (it was checked to sum to zero)
	Started  time.Time `json:"started"`  // everything acknowledged before this is in the backup
	Seconds  float64   `json:"seconds"`  // how long it took
}

// ErrBackupUnsupported refuses a backup of a store that cannot checkpoint
// itself (PostgreSQL).
var ErrBackupUnsupported = errors.New("this bank's ledger is in PostgreSQL, which bankd does not back up: use the database's own tools, pg_basebackup (a physical backup, with WAL archiving for point-in-time recovery) or pg_dump (a logical one); see docs/OPERATIONS.md")

// checkpointer is a store that can write a consistent copy of itself while
// it serves (pebblestore.Store).
type checkpointer interface {
	Checkpoint(ctx context.Context, dir string) (pebblestore.CheckpointInfo, error)
}

// Backup writes a consistent checkpoint of the running bank's ledger to dir
// (absolute, must not exist): every operation acknowledged before the call
// is in it. Keys are not part of it (back up keys.json on its own).
func (n *Bank) Backup(ctx context.Context, dir string) (*BackupResult, error) {
	cp, ok := n.store.(checkpointer)
	if !ok {
		return nil, ErrBackupUnsupported
	}
	if !filepath.IsAbs(dir) {
		return nil, fmt.Errorf("%w: %q", errBackupRelative, dir)
	}
	if !n.backup.TryLock() {
		return nil, errBackupRunning
	}
	defer n.backup.Unlock()
	start := time.Now()
	info, err := cp.Checkpoint(ctx, dir)
	if err != nil {
		n.backups.total.WithLabelValues("error").Inc()
		return nil, err
	}
	n.backups.total.WithLabelValues("ok").Inc()
	n.backups.last.SetToCurrentTime()
	return &BackupResult{
		Path: info.Dir, Files: info.Files, Bytes: info.Bytes, Accounts: info.Accounts,
		Started: start.UTC(), Seconds: time.Since(start).Seconds(),
	}, nil
}

var (
	errBackupRunning  = errors.New("another backup is running")
	errBackupRelative = errors.New("the backup directory must be an absolute path on the bank's host")
)

type backupMetrics struct {
	total *prometheus.CounterVec
	last  prometheus.Gauge
}

func newBackupMetrics() *backupMetrics {
	return &backupMetrics{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "blindbank_backups_total", Help: "Backups (ledger checkpoints) by result: ok or error.",
		}, []string{"result"}),
		last: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "blindbank_backup_last_success_timestamp_seconds", Help: "When the last backup succeeded (Unix time); 0 if none since start.",
		}),
	}
}

// maxBackupRequest bounds the request body.
const maxBackupRequest = 64 << 10

func (n *Bank) backupHandler(log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req BackupRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, maxBackupRequest))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			backupError(w, http.StatusBadRequest, fmt.Errorf("bad backup request: %v", err))
			return
		}
		if req.To == "" {
			backupError(w, http.StatusBadRequest, errors.New("bad backup request: no target directory"))
			return
		}
		log.Info("backup started", "to", req.To)
		res, err := n.Backup(r.Context(), req.To)
		if err != nil {
			code := http.StatusInternalServerError
			switch {
			case errors.Is(err, ErrBackupUnsupported):
				code = http.StatusNotImplemented
			case errors.Is(err, fs.ErrExist), errors.Is(err, errBackupRunning):
				code = http.StatusConflict
			case errors.Is(err, errBackupRelative):
				code = http.StatusBadRequest
			}
			log.Error("backup failed", "to", req.To, "err", err)
			backupError(w, code, err)
			return
		}
		log.Info("backup written", "to", res.Path, "files", res.Files, "bytes", res.Bytes, "accounts", res.Accounts, "seconds", res.Seconds)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(res)
	})
}

func backupError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

// AdminClient reaches a running daemon's admin listener.
type AdminClient struct {
	Addr  string
	Token string
	// TLS is zero for a plaintext admin listener on loopback; otherwise how
	// to trust its certificate and which client certificate to present.
	TLS transport.ClientConfig
}

// RequestBackup asks a running bank for a checkpoint of its ledger in to,
// a directory on the bank's host (made absolute here, relative to the
// working directory, so give an absolute path when the bank runs
// elsewhere). It waits for the backup to finish, as long as ctx allows.
func (a AdminClient) RequestBackup(ctx context.Context, to string) (*BackupResult, error) {
	abs, err := filepath.Abs(to)
	if err != nil {
		return nil, err
	}
	client, base, err := transport.AdminHTTP(a.Addr, a.TLS)
	if err != nil {
		return nil, err
	}
	defer client.CloseIdleConnections()
	body, _ := json.Marshal(BackupRequest{To: abs})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+BackupPath, strings.NewReader(string(body)))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	transport.SetToken(req, a.Token)
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return nil, &BackupError{Status: resp.StatusCode, Msg: e.Error}
		}
		return nil, &BackupError{Status: resp.StatusCode, Msg: strings.TrimSpace(string(b))}
	}
	var res BackupResult
	if err := json.Unmarshal(b, &res); err != nil {
		return nil, fmt.Errorf("backup: bad answer: %w", err)
	}
	return &res, nil
}

// BackupError is a backup the bank refused or failed; Status is the HTTP
// status (see BackupPath).
type BackupError struct {
	Status int
	Msg    string
}

func (e *BackupError) Error() string { return "backup refused by the bank: " + e.Msg }
