package merchant

import (
	"context"
	"errors"
	"time"

	"github.com/blindbank/blindbank/echeck"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/bank/auditlog"
	"github.com/blindbank/blindbank/bank/logclient"
	"github.com/blindbank/blindbank/ecash"
	pb "github.com/blindbank/blindbank/proto"
)

// errorCodes is the merchant's own error vocabulary, to gRPC codes and
// reasons (docs/PROTOCOL.md §6.1), in the order toStatus tries it.
var errorCodes = []struct {
	err    error
	code   codes.Code
	reason string
}{
	{ErrClosed, codes.Unavailable, "MERCHANT_CLOSED"},
	{ErrNoOrder, codes.NotFound, "NO_ORDER"},
	{ErrNoProduct, codes.NotFound, "NO_PRODUCT"},
	{ErrNoSale, codes.NotFound, "NO_SALE"},
	// Not settled either way, no refusal: an earlier send may yet be
	// taken; ask again later. (Before ErrClockAhead, which wraps
	// ErrRefundInFlight for a pending refund dated ahead.)
	{ErrRefundInFlight, codes.Unavailable, "REFUND_IN_FLIGHT"},
	{ErrPaymentPending, codes.Unavailable, "PAYMENT_PENDING"},
	{ErrSettlement, codes.FailedPrecondition, "SETTLEMENT_MISMATCH"},
	{logclient.ErrMismatch, codes.FailedPrecondition, "LOG_MISMATCH"},
	{auditlog.ErrForked, codes.FailedPrecondition, "LOG_FORKED"},
	{ErrNotPaid, codes.FailedPrecondition, "ORDER_NOT_PAID"},
	{ErrPendingRefund, codes.FailedPrecondition, "PENDING_REFUND_COMPLETED"},
	{ErrRefundID, codes.FailedPrecondition, "NO_REFUND"},
	{ErrClockAhead, codes.FailedPrecondition, "CLOCK_AHEAD"},
	{ErrClockBehind, codes.FailedPrecondition, "CLOCK_BEHIND"},
	{ErrRefundDropped, codes.FailedPrecondition, "REFUND_DROPPED"},
	{ErrSaleConflict, codes.AlreadyExists, "SALE_CONFLICT"},
}

// toStatus maps the merchant's own errors, then defers to the bank's table
// (errors relayed from the bank are already statuses and pass unchanged, so
// a wallet sees the bank's double-spend proof and reason), except the bank
// client's failures (bankFailure).
func (m *Merchant) toStatus(ctx context.Context, err error) error {
	for _, e := range errorCodes {
		if errors.Is(err, e.err) {
			return bank.NewStatus(e.code, e.reason, err.Error()).Err()
		}
	}
	switch {
	case errors.Is(err, ErrBadBankAnswer):
		// Unavailable, not a refusal: the bank may have decided all the same.
		return bank.NewStatus(codes.Unavailable, "BAD_BANK_ANSWER", ErrBadBankAnswer.Error()+"; the bank may have recorded it all the same: ask the bank for the payment's or EPOID's status").Err()
	case errors.Is(err, ErrGoodsChanged):
		m.log.Error("cannot deliver", "err", err)
		return bank.NewStatus(codes.Unavailable, "GOODS_UNAVAILABLE", "merchant: this product cannot be delivered right now").Err()
	}
	if msg, ok := bankFailure(err); ok {
		m.log.Warn("bank call failed", "request_id", bank.RequestID(ctx), "err", err)
		if r := bank.Reason(err); r != "" { // the bank's own (STORE_UNAVAILABLE, …), which tells nothing of the merchant
			return bank.NewStatus(status.Code(err), r, msg).Err()
		}
		return status.Error(status.Code(err), msg)
	}
	return bank.ToStatus(ctx, err, m.log)
}

// bankFailure reports whether err is a status the merchant's bank client
// returned with a code the bank does not answer deliberately, or answers
// without anything a wallet could use, and the fixed message a wallet is
// told instead: a gRPC client makes Unavailable, DeadlineExceeded, Unknown
// and Internal statuses of its own, whose messages name the bank's
// address, the merchant's connection error or TLS failure, none of the
// wallet's business. The code is kept: none of them is a refusal
// (bank.Definitive), so the wallet, not knowing whether the bank acted,
// retries the same request. The full error is logged.
func bankFailure(err error) (string, bool) {
	if _, ok := status.FromError(err); !ok {
		return "", false
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return "merchant: the bank is unreachable; retry", true
	case codes.Unknown, codes.Internal:
		return "merchant: the bank failed to answer; retry", true
	}
	return "", false
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
		return nil, s.m.toStatus(ctx, err)
	}
	return &pb.GetPaymentRequestResponse{PaymentRequest: o.Request, MerchantSig: o.Sig, Summary: o.Summary}, nil
}

func (s *publicServer) Pay(ctx context.Context, req *pb.PayRequest) (*pb.PayResponse, error) {
	if len(req.SealedPayment) > ecash.MaxSealedLen {
		return nil, status.Error(codes.InvalidArgument, "merchant: sealed payment too large")
	}
	rcpt, err := s.m.Pay(ctx, req.OrderId, req.SealedPayment)
	if err != nil {
		return nil, s.m.toStatus(ctx, err)
	}
	return &pb.PayResponse{Receipt: rcpt}, nil
}

func (s *publicServer) ListProducts(ctx context.Context, req *pb.ListProductsRequest) (*pb.ListProductsResponse, error) {
	out := &pb.ListProductsResponse{MerchantAccount: s.m.account, MerchantKey: s.m.PublicKey()}
	for _, p := range s.m.cat.Products() {
		out.Products = append(out.Products, &pb.Product{Id: p.ID, Description: p.Description, Price: p.Price.String(), Size: uint64(p.Size)})
	}
	return out, nil
}

func (s *publicServer) Quote(ctx context.Context, req *pb.QuoteRequest) (*pb.QuoteResponse, error) {
	q, err := s.m.Quote(req.PriceRequest)
	if err != nil {
		return nil, s.m.toStatus(ctx, err)
	}
	return &pb.QuoteResponse{Quote: q}, nil
}

func (s *publicServer) GetGoods(ctx context.Context, req *pb.GetGoodsRequest) (*pb.GetGoodsResponse, error) {
	d, err := s.m.GetGoods(ctx, req.Quote)
	if err != nil {
		return nil, s.m.toStatus(ctx, err)
	}
	return &pb.GetGoodsResponse{Delivery: d}, nil
}

func (s *publicServer) SubmitEPO(ctx context.Context, req *pb.SubmitEPORequest) (*pb.SubmitEPOResponse, error) {
	a, err := s.m.SubmitEPO(ctx, req.SignedEpo)
	if err != nil {
		return nil, s.m.toStatus(ctx, err)
	}
	return &pb.SubmitEPOResponse{Receipt: a.RawReceipt, CustomerBlock: a.CustomerBlock}, nil
}

func (s *publicServer) WriteCheck(ctx context.Context, req *pb.SubmitEPORequest) (*pb.SubmitEPOResponse, error) {
	a, err := s.m.WriteCheck(ctx, req.SignedEpo)
	if err != nil {
		return nil, s.m.toStatus(ctx, err)
	}
	return &pb.SubmitEPOResponse{Receipt: a.RawReceipt, CustomerBlock: a.CustomerBlock}, nil
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
		return nil, s.m.toStatus(ctx, err)
	}
	if req.TtlSeconds < 0 || req.TtlSeconds > int64(ecash.MaxPaymentLifetime/time.Second) {
		return nil, status.Error(codes.InvalidArgument, "merchant: ttl must be 0 to 30 days (ecash.MaxPaymentLifetime)")
	}
	o, err := s.m.CreateOrder(amt, req.Summary, time.Duration(req.TtlSeconds)*time.Second)
	if err != nil {
		return nil, s.m.toStatus(ctx, err)
	}
	return &pb.CreateOrderResponse{OrderId: o.ID, PaymentUri: s.m.PaymentURI(o)}, nil
}

func (s *adminServer) OrderStatus(ctx context.Context, req *pb.OrderStatusRequest) (*pb.OrderStatusResponse, error) {
	o, err := s.m.CheckOrder(ctx, req.OrderId)
	if err != nil {
		return nil, s.m.toStatus(ctx, err)
	}
	return &pb.OrderStatusResponse{
		OrderId: o.ID, Amount: o.Amount.String(), Summary: o.Summary, Status: o.Status(s.m.now()),
		Receipt: o.Receipt, ExpiresUnixMs: o.ExpiresAt.UnixMilli(), PaymentUri: s.m.PaymentURI(o),
	}, nil
}

func (s *adminServer) VerifySettlement(ctx context.Context, req *pb.VerifySettlementRequest) (*pb.VerifySettlementResponse, error) {
	rep, err := s.m.VerifySettlement(ctx, req.Statement)
	if err != nil {
		return nil, s.m.toStatus(ctx, err)
	}
	st := rep.Statement
	money := func(v int64) string { return ecash.Amount{Currency: st.Currency, Value: uint64(max(v, 0))}.String() }
	return &pb.VerifySettlementResponse{
		Account: st.Account, FromUnixMs: st.From.UnixMilli(), ToUnixMs: st.To.UnixMilli(),
		Deposits: int32(rep.Deposits), Deposited: rep.Deposited.String(), PaidOut: rep.PaidOut.String(),
		Opening: money(st.Opening), Closing: money(st.Closing()), UnmatchedPayments: rep.Unmatched, LateOrders: rep.Late, UnsettledOrders: rep.Unsettled,
	}, nil
}

func (s *adminServer) RefundOrder(ctx context.Context, req *pb.RefundOrderRequest) (*pb.RefundOrderResponse, error) {
	amount, err := ecash.ParseAmount(req.Amount)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	r, err := s.m.Refund(ctx, req.OrderId, req.RefundId, amount)
	if err != nil {
		return nil, s.m.toStatus(ctx, err)
	}
	return &pb.RefundOrderResponse{Receipt: r.Receipt.Encode(), TotalRefunded: r.Total.String(), RefundId: r.ID}, nil
}

func (s *adminServer) VerifyLog(ctx context.Context, _ *pb.VerifyLogRequest) (*pb.VerifyLogResponse, error) {
	rep, err := s.m.VerifyLog(ctx)
	if err != nil {
		// Only the merchant's own detail: a status relayed from the bank
		// (or its log) keeps its code, message and reason but not its
		// other details, since the client writes a VerifyLogResponse
		// detail as the checkpoint the merchant holds, and the bank is the
		// audited party.
		relayed := s.m.toStatus(ctx, err)
		st := status.New(status.Code(relayed), status.Convert(relayed).Message())
		if r := bank.Reason(relayed); r != "" {
			st = bank.NewStatus(st.Code(), r, st.Message())
		}
		// A mismatch comes with the report of the checkpoint held (saved,
		// its signature verified): the evidence of it, which "merchantd
		// verify-log --checkpoint-out" writes, travels as the status's
		// detail. Not after a fork (no report: the error holds both).
		if rep != nil && len(rep.Signed) > 0 && errors.Is(err, logclient.ErrMismatch) {
			if withRep, derr := st.WithDetails(logResponse(rep)); derr == nil {
				st = withRep
			}
		}
		return nil, st.Err()
	}
	return logResponse(rep), nil
}

func logResponse(rep *LogReport) *pb.VerifyLogResponse {
	return &pb.VerifyLogResponse{LogSize: rep.Checkpoint.Size, Root: rep.Checkpoint.Root[:], Verified: int32(rep.Verified), Waiting: int32(rep.Waiting), Checkpoint: rep.Signed,
		AdoptedKeySet: rep.AdoptedKeySet}
}

func (s *adminServer) SaleStatus(ctx context.Context, req *pb.SaleStatusRequest) (*pb.SaleStatusResponse, error) {
	id, err := echeck.ParseEPOID(req.Epoid)
	if err != nil {
		return nil, s.m.toStatus(ctx, err)
	}
	st, err := s.m.SaleStatus(ctx, id)
	if err != nil {
		return nil, s.m.toStatus(ctx, err)
	}
	out := &pb.SaleStatusResponse{
		Epoid: id.String(), ProductId: st.ProductID, State: st.State, Receipt: st.RawReceipt, FromBank: st.FromBank,
	}
	if st.Kind != 0 {
		out.Kind = st.Kind.String()
		out.Price = st.Price.String()
	}
	if st.Receipt != nil {
		out.Reason = st.Receipt.Reason
	}
	if !st.Delivered.IsZero() {
		out.DeliveredUnixMs = st.Delivered.UnixMilli()
	}
	return out, nil
}
