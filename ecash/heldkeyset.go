package ecash

import (
	"crypto/ed25519"
	"fmt"
)

// HeldKeySet is the bank's signed key set a wallet or a merchant stores,
// read back under the bank's master key it pinned: decoded, or why it does
// not decode. Their "keyset" commands show it, and drop it by its Hash.
type HeldKeySet struct {
	Master ed25519.PublicKey // the bank's master key pinned; nil: none yet
	Signed []byte            // the signed key set stored; nil: none
	Hash   Hash              // SHA-256 of Signed
	KeySet *KeySet           // Signed decoded under Master; nil if it does not
	Err    error             // why it does not decode (it wraps the holder's corrupt error); nil if it does or there is none
}

// ReadHeldKeySet reads signed, the key set stored (nil: none), under
// master, the master key pinned (nil: none). A set that does not decode
// under it has Err wrapping corrupt, the holder's error for that.
func ReadHeldKeySet(signed []byte, master ed25519.PublicKey, corrupt error) *HeldKeySet {
	h := &HeldKeySet{Master: master, Signed: signed}
	if signed == nil {
		return h
	}
	h.Hash = HashOf(signed)
	h.KeySet, h.Err = DecodeHeldKeySet(signed, master, corrupt)
	return h
}

// DecodeHeldKeySet decodes signed, a stored key set, under pinned, the
// master key pinned with it, which must be one (DecodeKeySet checks no
// signer under nil). Its errors wrap corrupt.
func DecodeHeldKeySet(signed []byte, pinned ed25519.PublicKey, corrupt error) (*KeySet, error) {
	if len(pinned) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: no valid master key pinned (%d bytes)", corrupt, len(pinned))
	}
	ks, err := DecodeKeySet(signed, pinned)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", corrupt, err)
	}
	return ks, nil
}
