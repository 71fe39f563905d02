package bank

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/tlog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// publicServer adapts Bank to the generated Bank service: bytes in, bytes
// out; errors mapped by ToStatus.
type publicServer struct {
	pb.UnimplementedBankServer
	b *Bank
}

// The answers of the lookups that find nothing.
var (
	// ErrNotPaid: DepositStatus knows no deposit of the payment request.
	ErrNotPaid = errors.New("bank: payment request not paid")
	// ErrNoLogEntry: FindEntry knows no audit-log entry of the reference.
	ErrNoLogEntry = errors.New("bank: no log entry for this reference")
)

// PublicServer returns the wallet- and merchant-facing gRPC service.
func (b *Bank) PublicServer() pb.BankServer { return &publicServer{b: b} }

// Register registers the bank's public services on s: Bank and AuditLog.
func (b *Bank) Register(s *grpc.Server) {
	pb.RegisterBankServer(s, b.PublicServer())
	pb.RegisterAuditLogServer(s, &logServer{b: b})
}

// logServer is the AuditLog service.
type logServer struct {
	pb.UnimplementedAuditLogServer
	b *Bank
}

func (s *logServer) GetCheckpoint(ctx context.Context, _ *pb.GetCheckpointRequest) (*pb.GetCheckpointResponse, error) {
	cp, err := s.b.Checkpoint(ctx)
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	return &pb.GetCheckpointResponse{Checkpoint: cp}, nil
}

func (s *logServer) GetLogEntries(ctx context.Context, req *pb.GetLogEntriesRequest) (*pb.GetLogEntriesResponse, error) {
	es, err := s.b.LogEntries(ctx, req.From, int(min(req.Count, MaxLogRead)))
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	return &pb.GetLogEntriesResponse{Entries: es}, nil
}

func (s *logServer) GetInclusionProof(ctx context.Context, req *pb.GetInclusionProofRequest) (*pb.LogProof, error) {
	p, err := s.b.InclusionProof(ctx, req.Index, req.TreeSize)
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	return logProof(p), nil
}

func (s *logServer) GetConsistencyProof(ctx context.Context, req *pb.GetConsistencyProofRequest) (*pb.LogProof, error) {
	p, err := s.b.ConsistencyProof(ctx, req.OldSize, req.NewSize)
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	return logProof(p), nil
}

func (s *logServer) FindEntry(ctx context.Context, req *pb.FindEntryRequest) (*pb.FindEntryResponse, error) {
	var ref ecash.Hash
	if len(req.Ref) != len(ref) {
		return nil, ToStatus(ctx, fmt.Errorf("%w: the reference must be 32 bytes", ecash.ErrMalformed), s.b.log)
	}
	copy(ref[:], req.Ref)
	index, found, err := s.b.store.LogIndex(ctx, ref)
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	if !found {
		return nil, ToStatus(ctx, ErrNoLogEntry, s.b.log)
	}
	return &pb.FindEntryResponse{Index: index}, nil
}

func logProof(hs []tlog.Hash) *pb.LogProof {
	out := &pb.LogProof{Hashes: make([][]byte, len(hs))}
	for i := range hs {
		out.Hashes[i] = hs[i][:]
	}
	return out
}

func (s *publicServer) GetKeys(context.Context, *pb.GetKeysRequest) (*pb.GetKeysResponse, error) {
	_, signed := s.b.KeySet()
	return &pb.GetKeysResponse{SignedKeyset: signed}, nil
}

func (s *publicServer) PrepareWithdraw(ctx context.Context, req *pb.PrepareWithdrawRequest) (*pb.PrepareWithdrawResponse, error) {
	items := make([]PrepareItem, len(req.Items))
	for i, it := range req.Items {
		if len(it.Denomination) != len(items[i].Denom) {
			return nil, ToStatus(ctx, fmt.Errorf("%w: denomination id must be 32 bytes", ecash.ErrMalformed), s.b.log)
		}
		copy(items[i].Denom[:], it.Denomination)
		items[i].Request = it.Request
	}
	answers, err := s.b.PrepareWithdraw(items)
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	return &pb.PrepareWithdrawResponse{Answers: answers}, nil
}

func (s *publicServer) Withdraw(ctx context.Context, req *pb.WithdrawRequest) (*pb.WithdrawResponse, error) {
	sigs, err := s.b.Withdraw(ctx, req.Body, req.AccountSig)
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	return &pb.WithdrawResponse{BlindSignatures: sigs}, nil
}

func (s *publicServer) Deposit(ctx context.Context, req *pb.DepositRequest) (*pb.DepositResponse, error) {
	rcpt, raw, err := s.b.Deposit(ctx, req.PaymentRequest, req.MerchantSig, req.SealedPayment)
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	return s.depositResponse(ctx, raw, rcpt.PaymentHash)
}

// depositResponse is a receipt with its audit-log index.
func (s *publicServer) depositResponse(ctx context.Context, receipt []byte, payment ecash.Hash) (*pb.DepositResponse, error) {
	index, err := s.b.LogIndex(ctx, payment)
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	return &pb.DepositResponse{Receipt: receipt, LogIndex: index}, nil
}

func (s *publicServer) Swap(ctx context.Context, req *pb.SwapRequest) (*pb.SwapResponse, error) {
	sigs, err := s.b.Swap(ctx, req.Body)
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	index, err := s.b.LogIndex(ctx, ecash.HashOf(req.Body))
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	return &pb.SwapResponse{BlindSignatures: sigs, LogIndex: index}, nil
}

func (s *publicServer) Recoup(ctx context.Context, req *pb.RecoupRequest) (*pb.RecoupResponse, error) {
	r, err := s.b.Recoup(ctx, req.Request)
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	index, err := s.b.LogIndex(ctx, r.Request)
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	return &pb.RecoupResponse{CreditedAccount: r.Account, Receipt: r.Receipt, BlindSignatures: r.BlindSigs, LogIndex: index}, nil
}

func (s *publicServer) IssuedSignatures(ctx context.Context, req *pb.IssuedSignaturesRequest) (*pb.IssuedSignaturesResponse, error) {
	hs, err := hashes(req.BlindedHashes, "blinded hash")
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	sigs, err := s.b.IssuedSignatures(ctx, hs)
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	return &pb.IssuedSignaturesResponse{BlindSignatures: sigs}, nil
}

func (s *publicServer) CoinsSpent(ctx context.Context, req *pb.CoinsSpentRequest) (*pb.CoinsSpentResponse, error) {
	ids, err := hashes(req.CoinIds, "coin id")
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	spent, credit, payment, err := s.b.CoinsSpent(ctx, ids)
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	resp := &pb.CoinsSpentResponse{Spent: spent, RefundCredit: credit, RefundPayment: make([][]byte, len(payment))}
	for i, h := range payment {
		if credit[i] > 0 {
			resp.RefundPayment[i] = h[:]
		}
	}
	return resp, nil
}

func (s *publicServer) RefundReceipts(ctx context.Context, req *pb.RefundReceiptsRequest) (*pb.RefundReceiptsResponse, error) {
	hs, err := hashes([][]byte{req.PaymentHash}, "payment hash")
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	rs, err := s.b.store.RefundReceipts(ctx, hs[0])
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	return &pb.RefundReceiptsResponse{Receipts: rs}, nil
}

func (s *publicServer) Refund(ctx context.Context, req *pb.RefundRequest) (*pb.RefundResponse, error) {
	r, raw, err := s.b.Refund(ctx, req.Request)
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	index, err := s.b.LogIndex(ctx, r.RefundHash)
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	return &pb.RefundResponse{Receipt: raw, LogIndex: index}, nil
}

// hashes converts 32-byte fields, refusing (ecash.ErrMalformed) any other
// size and more than a request may carry.
func hashes(in [][]byte, what string) ([]ecash.Hash, error) {
	if len(in) > ecash.MaxCoinsPerRequest {
		return nil, fmt.Errorf("%w: %d values, at most %d", ecash.ErrMalformed, len(in), ecash.MaxCoinsPerRequest)
	}
	out := make([]ecash.Hash, len(in))
	for i, b := range in {
		if len(b) != len(out[i]) {
			return nil, fmt.Errorf("%w: %s %d must be 32 bytes", ecash.ErrMalformed, what, i)
		}
		copy(out[i][:], b)
	}
	return out, nil
}

func (s *publicServer) DepositStatus(ctx context.Context, req *pb.DepositStatusRequest) (*pb.DepositResponse, error) {
	var h ecash.Hash
	if len(req.PaymentHash) != len(h) {
		return nil, ToStatus(ctx, fmt.Errorf("%w: payment hash must be 32 bytes", ecash.ErrMalformed), s.b.log)
	}
	copy(h[:], req.PaymentHash)
	receipt, found, err := s.b.DepositStatus(ctx, h)
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	if !found {
		return nil, ToStatus(ctx, ErrNotPaid, s.b.log)
	}
	return s.depositResponse(ctx, receipt, h)
}

func (s *publicServer) SubmitCheck(ctx context.Context, req *pb.SubmitCheckRequest) (*pb.CheckResult, error) {
	r, err := s.b.SubmitCheck(ctx, req.Endorsement)
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	return &pb.CheckResult{Receipt: r.Receipt, CustomerBlock: r.CustomerBlock, LogIndex: r.LogIndex}, nil
}

func (s *publicServer) CheckStatus(ctx context.Context, req *pb.CheckStatusRequest) (*pb.CheckResult, error) {
	r, err := s.b.CheckStatus(ctx, req.Query)
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	return &pb.CheckResult{Receipt: r.Receipt, CustomerBlock: r.CustomerBlock, LogIndex: r.LogIndex}, nil
}

func (s *publicServer) GetStatement(ctx context.Context, req *pb.GetStatementRequest) (*pb.GetStatementResponse, error) {
	st, merchant, err := s.b.Statement(ctx, req.Request)
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	return &pb.GetStatementResponse{Statement: st.Encode(), Merchant: &merchant}, nil
}

// adminServer adapts Bank to the BankAdmin service. Authentication (the
// bearer token) is enforced by an interceptor where the server is built.
type adminServer struct {
	pb.UnimplementedBankAdminServer
	b *Bank
}

// AdminServer returns the operator-facing gRPC service.
func (b *Bank) AdminServer() pb.BankAdminServer { return &adminServer{b: b} }

func (s *adminServer) OpenAccount(ctx context.Context, req *pb.OpenAccountRequest) (*pb.OpenAccountResponse, error) {
	id, err := s.b.OpenAccount(ctx, req.Name, req.PublicKey, req.Merchant)
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	return &pb.OpenAccountResponse{Account: id}, nil
}

func (s *adminServer) Credit(ctx context.Context, req *pb.CreditRequest) (*pb.CreditResponse, error) {
	amt, err := ecash.ParseAmount(req.Amount)
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	bal, err := s.b.Credit(ctx, req.Account, amt, req.Memo, req.Reference)
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	// The holder's name, so that the operator sees whose account it was.
	// The credit is committed: a failed read leaves the name out, it does
	// not make the credit look refused.
	var name string
	if a, err := s.b.store.Account(ctx, req.Account); err == nil {
		name = a.Name
	}
	return &pb.CreditResponse{Balance: bal.String(), Name: name}, nil
}

func (s *adminServer) ListOwed(ctx context.Context, req *pb.ListOwedRequest) (*pb.ListOwedResponse, error) {
	owed, err := s.b.Owed(ctx, time.UnixMilli(req.FromUnixMs), time.UnixMilli(req.ToUnixMs))
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	out := &pb.ListOwedResponse{}
	for _, o := range owed {
		out.Merchants = append(out.Merchants, &pb.ListOwedResponse_Owed{
			Account: o.Account, Name: o.Name, Credited: s.b.Money(o.Credited).String(),
			PaidOut: s.b.Money(o.PaidOut).String(), Balance: s.b.Money(o.Balance).String(),
			Opening: s.b.Money(o.Opening).String(), Other: s.b.signedMoney(o.Other), Closing: s.b.Money(o.Closing).String(),
		})
	}
	return out, nil
}

func (s *adminServer) RevokeDenomination(ctx context.Context, req *pb.RevokeDenominationRequest) (*pb.RevokeDenominationResponse, error) {
	d, err := s.b.RevokeDenomination(ctx, req.Denomination)
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	_, signed := s.b.KeySet()
	return &pb.RevokeDenominationResponse{Denomination: d.ID[:], Value: d.Value.String(), SignedKeyset: signed}, nil
}

func (s *adminServer) Payout(ctx context.Context, req *pb.PayoutRequest) (*pb.PayoutResponse, error) {
	amt, err := ecash.ParseAmount(req.Amount)
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	from, to := time.UnixMilli(req.FromUnixMs), time.Time{}
	if req.ToUnixMs != 0 {
		to = time.UnixMilli(req.ToUnixMs)
		if !from.Before(to) {
			return nil, ToStatus(ctx, fmt.Errorf("%w: the statement period must end after it starts", ecash.ErrMalformed), s.b.log)
		}
	}
	res, err := s.b.PayoutSettlement(ctx, req.Account, amt, req.Memo, req.Reference, from, to)
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	out := &pb.PayoutResponse{Balance: res.Balance.String()}
	if res.Statement != nil {
		out.Statement = res.Statement.Encode()
	} else {
		// The payout stands: never a refusal now, only why the statement
		// is missing, in the words a refusal would have had.
		out.StatementError = status.Convert(ToStatus(ctx, res.NoStatement, s.b.log)).Message()
	}
	return out, nil
}

func (s *adminServer) GetAccount(ctx context.Context, req *pb.GetAccountRequest) (*pb.GetAccountResponse, error) {
	a, err := s.b.store.Account(ctx, req.Account)
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	limit := int(min(req.HistoryLimit, 1000))
	if limit == 0 {
		limit = 20
	}
	hist, err := s.b.store.History(ctx, req.Account, limit)
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	now := s.b.now()
	locked, err := s.b.store.LockedSources(ctx, req.Account, now)
	if err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	out := &pb.GetAccountResponse{
		Account: a.ID, Name: a.Name, PublicKey: a.Key, Merchant: a.Merchant, Balance: s.b.Money(a.Balance).String(),
		LimitPerTransaction: s.b.limitString(a.Limits.PerTransaction), LimitPerDay: s.b.limitString(a.Limits.PerDay),
		SpentToday: s.b.Money(a.SpentOn(now)).String(), Locked: locked > 0, // for some source
	}
	for _, p := range hist {
		out.History = append(out.History, &pb.Posting{
			Seq: p.Seq, TimeUnixMs: p.Time.UnixMilli(), Kind: p.Kind, Amount: s.b.signedMoney(p.Amount),
			Balance: s.b.Money(p.Balance).String(), Memo: p.Memo,
		})
	}
	return out, nil
}

func (s *adminServer) SetLimits(ctx context.Context, req *pb.SetLimitsRequest) (*pb.SetLimitsResponse, error) {
	var l Limits
	for _, f := range []struct {
		in  string
		out *int64
	}{{req.PerTransaction, &l.PerTransaction}, {req.PerDay, &l.PerDay}} {
		if f.in == "" {
			continue
		}
		a, err := ecash.ParseAmount(f.in)
		if err == nil && a.Currency != s.b.keys.Currency {
			err = fmt.Errorf("%w: %s, this bank holds %s", ErrWrongCurrency, a.Currency, s.b.keys.Currency)
		}
		if err != nil {
			return nil, ToStatus(ctx, err, s.b.log)
		}
		*f.out = int64(a.Value)
	}
	if err := s.b.SetLimits(ctx, req.Account, l); err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	return &pb.SetLimitsResponse{}, nil
}

func (s *adminServer) Unlock(ctx context.Context, req *pb.UnlockRequest) (*pb.UnlockResponse, error) {
	if err := s.b.Unlock(ctx, req.Account); err != nil {
		return nil, ToStatus(ctx, err, s.b.log)
	}
	return &pb.UnlockResponse{}, nil
}

// limitString shows a limit, "" for none.
func (b *Bank) limitString(v int64) string {
	if v == 0 {
		return ""
	}
	return b.Money(v).String()
}

func (b *Bank) signedMoney(v int64) string {
	if v < 0 {
		return "-" + ecash.Amount{Currency: b.keys.Currency, Value: uint64(-v)}.String()
	}
	return ecash.Amount{Currency: b.keys.Currency, Value: uint64(v)}.String()
}
