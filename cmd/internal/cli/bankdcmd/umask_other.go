//go:build !unix

package bankdcmd

import "errors"

// makeFilesPrivate refuses: the signer keeps its socket and nonce log
// private by Unix file modes, which this platform does not have.
func makeFilesPrivate() error {
	return errors.New("bankd signer needs Unix file modes to keep its socket and files private; it does not run on this platform")
}
