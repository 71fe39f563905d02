package bank

import (
	"context"

	"google.golang.org/grpc/codes"
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

// PublicServer returns the wallet- and merchant-facing gRPC service.
func (b *Bank) PublicServer() pb.BankServer { return &publicServer{b: b} }

func (s *publicServer) GetKeys(context.Context, *pb.GetKeysRequest) (*pb.GetKeysResponse, error) {
	return &pb.GetKeysResponse{SignedKeyset: s.b.signed}, nil
}

func (s *publicServer) PrepareWithdraw(ctx context.Context, req *pb.PrepareWithdrawRequest) (*pb.PrepareWithdrawResponse, error) {
	items := make([]PrepareItem, len(req.Items))
	for i, it := range req.Items {
		if len(it.Denomination) != len(items[i].Denom) {
			return nil, status.Error(codes.InvalidArgument, "bank: denomination id must be 32 bytes")
		}
		copy(items[i].Denom[:], it.Denomination)
		items[i].Request = it.Request
	}
	answers, err := s.b.PrepareWithdraw(items)
	if err != nil {
		return nil, ToStatus(err, s.b.log)
	}
	return &pb.PrepareWithdrawResponse{Answers: answers}, nil
}

func (s *publicServer) Withdraw(ctx context.Context, req *pb.WithdrawRequest) (*pb.WithdrawResponse, error) {
	sigs, err := s.b.Withdraw(ctx, req.Body, req.AccountSig)
	if err != nil {
		return nil, ToStatus(err, s.b.log)
	}
	return &pb.WithdrawResponse{BlindSignatures: sigs}, nil
}

func (s *publicServer) Deposit(ctx context.Context, req *pb.DepositRequest) (*pb.DepositResponse, error) {
	_, raw, err := s.b.Deposit(ctx, req.PaymentRequest, req.MerchantSig, req.SealedPayment)
	if err != nil {
		return nil, ToStatus(err, s.b.log)
	}
	return &pb.DepositResponse{Receipt: raw}, nil
}

func (s *publicServer) DepositStatus(ctx context.Context, req *pb.DepositStatusRequest) (*pb.DepositResponse, error) {
	var h ecash.Hash
	if len(req.PaymentHash) != len(h) {
		return nil, status.Error(codes.InvalidArgument, "bank: payment hash must be 32 bytes")
	}
	copy(h[:], req.PaymentHash)
	receipt, found, err := s.b.DepositStatus(ctx, h)
	if err != nil {
		return nil, ToStatus(err, s.b.log)
	}
	if !found {
		return nil, status.Error(codes.NotFound, "bank: payment request not paid")
	}
	return &pb.DepositResponse{Receipt: receipt}, nil
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
		return nil, ToStatus(err, s.b.log)
	}
	return &pb.OpenAccountResponse{Account: id}, nil
}

func (s *adminServer) Credit(ctx context.Context, req *pb.CreditRequest) (*pb.CreditResponse, error) {
	amt, err := ecash.ParseAmount(req.Amount)
	if err != nil {
		return nil, ToStatus(err, s.b.log)
	}
	bal, err := s.b.Credit(ctx, req.Account, amt, req.Memo, req.Reference)
	if err != nil {
		return nil, ToStatus(err, s.b.log)
	}
	return &pb.CreditResponse{Balance: bal.String()}, nil
}

func (s *adminServer) GetAccount(ctx context.Context, req *pb.GetAccountRequest) (*pb.GetAccountResponse, error) {
	a, err := s.b.store.Account(ctx, req.Account)
	if err != nil {
		return nil, ToStatus(err, s.b.log)
	}
	limit := int(min(req.HistoryLimit, 1000))
	if limit == 0 {
		limit = 20
	}
	hist, err := s.b.store.History(ctx, req.Account, limit)
	if err != nil {
		return nil, ToStatus(err, s.b.log)
	}
	out := &pb.GetAccountResponse{Account: a.ID, Name: a.Name, PublicKey: a.Key, Merchant: a.Merchant, Balance: s.b.Money(a.Balance).String()}
	for _, p := range hist {
		out.History = append(out.History, &pb.Posting{
			Seq: p.Seq, TimeUnixMs: p.Time.UnixMilli(), Kind: p.Kind, Amount: s.b.signedMoney(p.Amount),
			Balance: s.b.Money(p.Balance).String(), Memo: p.Memo,
		})
	}
	return out, nil
}

func (b *Bank) signedMoney(v int64) string {
	if v < 0 {
		return "-" + ecash.Amount{Currency: b.keys.Currency, Value: uint64(-v)}.String()
	}
	return ecash.Amount{Currency: b.keys.Currency, Value: uint64(v)}.String()
}
