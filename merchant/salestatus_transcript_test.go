package merchant

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/ecash"
	"github.com/blindbank/blindbank/echeck"
)

// transcriptSteps counts the steps of the till's transcript tr noted with
// EPOID id.
func transcriptSteps(t *testing.T, tr *bytes.Buffer, id echeck.EPOID) map[string]int {
	t.Helper()
	steps := map[string]int{}
	for line := range strings.Lines(tr.String()) {
		var rec ecash.TranscriptRecord
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("transcript line %q: %v", line, err)
		}
		if rec.Note == id.String() {
			steps[rec.Step]++
		}
	}
	return steps
}

// TestSaleStatusSettledInTranscript: an endorsed sale whose answer the
// till lost is settled by the till's own status query (SaleStatus, what
// "merchantd till status" asks), which stores the bank's receipt and takes
// the sale's mark, so Reconcile never sends it again: the receipt must be
// in the till's transcript, as every other receipt the till stores is. It
// was stored with no transcript line, so an auditor of the transcript
// missed the sale. Asked again, the sale is not recorded twice.
func TestSaleStatusSettledInTranscript(t *testing.T) {
	s := newShop(t)
	ctx := context.Background()
	tr := s.recordTranscript()
	_, q, d := s.offer("film")
	raw := s.sign(echeck.NewGoodsEPO(s.customerPub(), q, d, s.clock.now().Add(10*time.Minute)))
	s.bankc.loseAnswers.Store(true)
	if _, err := s.m.SubmitEPO(ctx, raw); status.Code(err) != codes.Unavailable {
		t.Fatalf("SubmitEPO: %v, want the answer lost", err)
	}
	s.bankc.loseAnswers.Store(false)
	for range 2 {
		if st, err := s.m.SaleStatus(ctx, d.EPOID); err != nil || st.State != StateApproved {
			t.Fatalf("status %v %+v", err, st)
		}
	}
	if sl, err := s.m.loadSale(d.EPOID); err != nil || sl.Receipt == nil || s.hasEndorsedMark(d.EPOID) {
		t.Fatalf("sale (%v): want it settled from the bank's record", err)
	}
	if n, err := s.m.Reconcile(ctx); err != nil || n != 0 {
		t.Fatalf("Reconcile settled %d (%v); want nothing left to settle", n, err)
	}
	if steps := transcriptSteps(t, tr, d.EPOID); steps["signed-epo"] != 1 || steps["endorsement"] != 1 || steps["epo-receipt"] != 1 {
		t.Fatalf("the till's transcript records %v for the sale; want its EPO, endorsement and receipt once each", steps)
	}
}
