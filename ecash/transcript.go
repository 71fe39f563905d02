package ecash

import (
	"encoding/hex"
	"encoding/json"
	"io"
	"sync"
	"time"
)

// TranscriptRecord is one protocol message as a wallet or merchant saw it:
// one JSON object per line. Data holds the message's canonical bytes in hex,
// so an auditor can re-verify every signature offline against the key set.
type TranscriptRecord struct {
	Time  int64  `json:"time_unix_ms"`
	Party string `json:"party"` // "wallet" or "merchant"
	Step  string `json:"step"`  // e.g. "withdraw-request", "deposit-receipt"
	Data  string `json:"data"`  // hex of the canonical encoding
	Note  string `json:"note,omitempty"`
}

// Transcript appends records to a writer; a nil *Transcript records nothing.
type Transcript struct {
	mu    sync.Mutex
	w     io.Writer
	party string
}

// NewTranscript records messages for party to w.
func NewTranscript(w io.Writer, party string) *Transcript {
	return &Transcript{w: w, party: party}
}

// Record writes one message. Errors writing the transcript are returned so a
// caller that asked for a transcript learns it is incomplete.
func (t *Transcript) Record(now time.Time, step string, data []byte, note string) error {
	if t == nil || t.w == nil {
		return nil
	}
	b, err := json.Marshal(TranscriptRecord{Time: now.UnixMilli(), Party: t.party, Step: step, Data: hex.EncodeToString(data), Note: note})
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	_, err = t.w.Write(append(b, '\n'))
	return err
}
