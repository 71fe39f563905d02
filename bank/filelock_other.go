//go:build !unix

package bank

import (
	"errors"
	"os"
)

// tryLockFile refuses: the signer's nonce log is kept only where it has
// been tested, on Unix. (Its rewrite also renames over a file it holds
// open, which Windows refuses.) bankd signer refuses here before this.
func tryLockFile(*os.File) error {
	return errors.New("bank: the signer's nonce log needs a Unix system")
}
