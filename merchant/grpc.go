package merchant

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// toStatus maps the merchant's own errors, then defers to the bank's table
// (errors relayed from the bank are already statuses and pass unchanged, so
// a wallet sees the bank's double-spend proof).
func (m *Merchant) toStatus(err error) error {
	switch {
	case errors.Is(err, ErrNoOrder):
		return status.Error(codes.NotFound, err.Error())
	}
	return bank.ToStatus(err, m.log)
}

type publicServer struct {
	pb.UnimplementedMerchantServer
	m *Merchant
}

// PublicServer is the wallet-facing service.
func (m *Merchant) PublicServer() pb.MerchantServer { return &publicServer{m: m} }

func (s *publicServer) GetPaymentRequest(ctx context.Context, req *pb.GetPaymentRequestRequest) (*pb.GetPaymentRequestResponse, error) {
	o, err := s.m.Order(req.OrderId)
	if err != nil {
		return nil, s.m.toStatus(err)
	}
	return &pb.GetPaymentRequestResponse{PaymentRequest: o.Request, MerchantSig: o.Sig, Summary: o.Summary}, nil
}

func (s *publicServer) Pay(ctx context.Context, req *pb.PayRequest) (*pb.PayResponse, error) {
	if len(req.SealedPayment) > ecash.MaxSealedLen {
		return nil, status.Error(codes.InvalidArgument, "merchant: sealed payment too large")
	}
	rcpt, err := s.m.Pay(ctx, req.OrderId, req.SealedPayment)
	if err != nil {
		return nil, s.m.toStatus(err)
	}
	return &pb.PayResponse{Receipt: rcpt}, nil
}

type adminServer struct {
	pb.UnimplementedMerchantAdminServer
	m *Merchant
}

// AdminServer is the operator-facing service.
func (m *Merchant) AdminServer() pb.MerchantAdminServer { return &adminServer{m: m} }

func (s *adminServer) CreateOrder(ctx context.Context, req *pb.CreateOrderRequest) (*pb.CreateOrderResponse, error) {
	amt, err := ecash.ParseAmount(req.Amount)
	if err != nil {
		return nil, s.m.toStatus(err)
	}
	if req.TtlSeconds < 0 || req.TtlSeconds > 30*24*3600 {
		return nil, status.Error(codes.InvalidArgument, "merchant: ttl must be 0 to 30 days")
	}
	o, err := s.m.CreateOrder(amt, req.Summary, time.Duration(req.TtlSeconds)*time.Second)
	if err != nil {
		return nil, s.m.toStatus(err)
	}
	return &pb.CreateOrderResponse{OrderId: o.ID}, nil
}

func (s *adminServer) OrderStatus(ctx context.Context, req *pb.OrderStatusRequest) (*pb.OrderStatusResponse, error) {
	o, err := s.m.Order(req.OrderId)
	if err != nil {
		return nil, s.m.toStatus(err)
	}
	return &pb.OrderStatusResponse{
		OrderId: o.ID, Amount: o.Amount.String(), Summary: o.Summary, Status: o.Status(s.m.now()),
		Receipt: o.Receipt, ExpiresUnixMs: o.ExpiresAt.UnixMilli(),
	}, nil
}
