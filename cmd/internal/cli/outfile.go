package cli

import (
	"errors"
	"fmt"
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
