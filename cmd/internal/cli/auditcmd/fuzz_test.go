package auditcmd

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/blindbank/blindbank/ecash"
)

// FuzzParseKeySet: a --keys file (raw or hex) parses only to a key set
// whose canonical encoding is the bytes returned, which decode again to it
// (pinned, if a master key is pinned); its hex form parses the same.
func FuzzParseKeySet(f *testing.F) {
	raw, err := os.ReadFile(filepath.Join(transcriptsDir, keySetFile))
	if err != nil {
		f.Fatal(err)
	}
	ks, err := ecash.DecodeKeySet(raw, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(raw, false)
	f.Add(raw, true)
	f.Add([]byte(hex.EncodeToString(raw)+"\n"), true)
	f.Add([]byte(strings.ToUpper(hex.EncodeToString(raw[:64]))+" \n "+hex.EncodeToString(raw[64:])), false)
	f.Add([]byte(hex.EncodeToString(raw[:len(raw)-1])), false)
	f.Fuzz(func(t *testing.T, b []byte, pinned bool) {
		var pin ed25519.PublicKey
		if pinned {
			pin = ks.MasterPub
		}
		got, bytesOf, err := parseKeySet(b, pin)
		if err != nil {
			if got != nil || bytesOf != nil {
				t.Fatal("a key set returned with an error")
			}
			return
		}
		if !bytes.Equal(got.Encode(), bytesOf) {
			t.Fatal("the bytes returned are not the key set's encoding")
		}
		again, err := ecash.DecodeKeySet(bytesOf, pin)
		if err != nil || !bytes.Equal(again.Encode(), bytesOf) {
			t.Fatalf("the bytes returned do not decode again: %v", err)
		}
		if h, _, err := parseKeySet([]byte(hex.EncodeToString(bytesOf)), pin); err != nil || !bytes.Equal(h.Encode(), bytesOf) {
			t.Fatalf("the key set's hex does not parse to it: %v", err)
		}
	})
}

// FuzzDecodedFields renders hostile bytes as each step of a transcript, the
// NetBill steps included (what "audit transcript --decoded" prints of a file
// from anyone): no panic; a JSON object on success, the same twice.
// Seeded with every record of the transcripts in testdata/.
func FuzzDecodedFields(f *testing.F) {
	steps := ecash.TranscriptSteps()
	for s := range netbillDecoders {
		steps = append(steps, s)
	}
	slices.Sort(steps)
	index := map[string]uint8{}
	for i, s := range steps {
		index[s] = uint8(i)
	}
	files, err := filepath.Glob(filepath.Join(transcriptsDir, "*.jsonl"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no transcripts to seed from (%v)", err)
	}
	for _, name := range files {
		raw, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		for line := range strings.SplitSeq(strings.TrimSpace(string(raw)), "\n") {
			var r ecash.TranscriptRecord
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				f.Fatalf("%s: %v", name, err)
			}
			i, ok := index[r.Step]
			if !ok {
				continue
			}
			data, err := hex.DecodeString(r.Data)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(i, data)
		}
	}
	f.Fuzz(func(t *testing.T, i uint8, data []byte) {
		step := steps[int(i)%len(steps)]
		out, err := decodedFields(step, data)
		if err != nil {
			if out != nil {
				t.Fatal("fields returned with an error")
			}
			return
		}
		var fields map[string]any
		if err := json.Unmarshal(out, &fields); err != nil {
			t.Fatalf("%s: not a JSON object: %v\n%s", step, err, out)
		}
		if again, err := decodedFields(step, data); err != nil || !bytes.Equal(again, out) {
			t.Fatalf("%s: rendered twice differently", step)
		}
	})
}

// FuzzLoadLogState: an "audit log --state" file loads only with this
// version, a master key of 32 bytes and, with a checkpoint, a checkpoint
// key of 32 bytes; the saved auditor it carries is FuzzAuditorUnmarshal's
// (package auditlog).
func FuzzLoadLogState(f *testing.F) {
	key := hex.EncodeToString(bytes.Repeat([]byte{1}, ed25519.PublicKeySize))
	good, _ := json.Marshal(logStateFile{Version: logStateVersion, BankID: "ab", MasterKey: key,
		Checkpoint: "origin\n1\nroot\n\n— origin sig\n", CheckpointKey: key, Audited: 1, Auditor: []byte("state")})
	f.Add(good)
	f.Add([]byte(`{"version":` + strconv.Itoa(logStateVersion) + `,"master_key":"` + key + `"}`))
	f.Add([]byte(`{"version":1}`))
	dir := f.TempDir()
	name := filepath.Join(dir, "state.json")
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
		st, err := loadLogState(name)
		if err != nil {
			if st != nil {
				t.Fatal("a state returned with an error")
			}
			return
		}
		if st == nil || len(st.master) != ed25519.PublicKeySize || (st.signed != nil && len(st.key) != ed25519.PublicKeySize) {
			t.Fatalf("%q loaded as %+v", b, st)
		}
	})
}
