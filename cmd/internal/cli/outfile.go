package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/blindbank/blindbank/bank"
)

// WriteOutFile writes data to path with mode perm, synced. It refuses an
// existing file unless replace (a mistyped path must not destroy a file),
// naming replaceFlag, the flag that asks for it ("": the command has none);
// with replace the file is replaced atomically. A file it could not
// write whole is removed.
func WriteOutFile(path string, data []byte, perm os.FileMode, replace bool, replaceFlag string) error {
	if replace {
		return bank.WriteFileAtomic(path, data, perm)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if errors.Is(err, fs.ErrExist) && replaceFlag == "" {
		return fmt.Errorf("%s: file exists, not overwritten", path)
	}
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists: not overwritten (%s replaces it)", path, replaceFlag)
	}
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// CheckpointOut are the --checkpoint-out FILE and --overwrite flags of the
// verify-log commands: the signed checkpoint a client holds, written for an
// auditor's "audit log --from FILE".
type CheckpointOut struct {
	Path      string // "": not asked for
	Overwrite bool
}

// Register adds the flags; holder names whose checkpoint ("wallet").
func (c *CheckpointOut) Register(fs *flag.FlagSet, holder string) {
	fs.StringVar(&c.Path, "checkpoint-out", "", "write the signed checkpoint the "+holder+" holds to `FILE`, for \"audit log --from\"")
	fs.BoolVar(&c.Overwrite, "overwrite", false, "with --checkpoint-out, replace FILE if it exists")
}

// Check refuses --overwrite without --checkpoint-out.
func (c *CheckpointOut) Check() error {
	if c.Overwrite && c.Path == "" {
		return Usagef("--overwrite needs --checkpoint-out FILE")
	}
	return nil
}

// Write writes the signed checkpoint to the file asked for.
func (c *CheckpointOut) Write(signed []byte) error {
	if err := WriteOutFile(c.Path, signed, 0o644, c.Overwrite, "--overwrite"); err != nil {
		return fmt.Errorf("--checkpoint-out: %w", err)
	}
	return nil
}

// AdoptedKeySetNote is the line the verify-log commands print when the
// client took a newer key set from the checkpoint (LogCheck.AdoptedKeySet).
const AdoptedKeySetNote = "adopted the newer key set the checkpoint names: the bank served an older one; the newer one is logged and follows it"

// LogCheck is what the verify-log commands of wallet and merchantd print
// with --json, one shape for both (docs/AUDIT.md, "A client's own check").
type LogCheck struct {
	LogSize        int64  `json:"log_size"`                  // entries in the checkpoint checked against
	Root           string `json:"root"`                      // its root hash, hex
	Verified       int    `json:"verified"`                  // the client's entries found matching, this run
	Waiting        int    `json:"waiting"`                   // entries not checkable yet, checked at a later run
	CheckpointFile string `json:"checkpoint_file,omitempty"` // --checkpoint-out
	// AdoptedKeySet: the checkpoint named a newer logged key set than the
	// bank served (a replica behind, or one showing the client an old set),
	// which follows the one held, and the client took it (LogReport).
	AdoptedKeySet bool `json:"adopted_key_set"`
}

// ReadFileLimited reads the file name, of at most limit bytes: a file
// named by a flag may be anything (a device that never ends, a log given
// by mistake), and the reader must not take it all into memory.
func ReadFileLimited(name string, limit int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadLimited(f, name, limit)
}

// ReadLimited reads r, named name in its error, to its end if that is at
// most limit bytes.
func ReadLimited(r io.Reader, name string, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, limit)
	}
	return b, nil
}
