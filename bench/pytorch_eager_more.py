"""The other architectures of saelab bench in the style of ../shared/bench/pytorch_eager_step.py
(PyTorch eager + Adam, SAELens's math): gated, jumprelu (straight-through threshold)
and batchtopk (dense decode); standard and topk are copies of the shared reference's, for devices
it does not run on. Same init, data and output lines as the shared reference.
usage: python3 pytorch_eager_more.py D_IN D_SAE BATCH STEPS [K] [ARCH,ARCH,...]
env: SAELAB_BENCH_DEVICE=cuda runs on the GPU (timed with torch.cuda.synchronize)."""
import os, sys, time, torch
dev = torch.device(os.environ.get("SAELAB_BENCH_DEVICE", "cpu"))
torch.manual_seed(0)
d_in, d_sae, B, steps = map(int, sys.argv[1:5]); k = int(sys.argv[5]) if len(sys.argv) > 5 else 32
archs = sys.argv[6].split(",") if len(sys.argv) > 6 else ["gated", "jumprelu", "batchtopk"]
torch.set_num_threads(torch.get_num_threads() if torch.get_num_threads() > 1 else 2)
bw = 0.001

def make(extra):
    W_dec = torch.randn(d_sae, d_in); W_dec = W_dec / W_dec.norm(dim=1, keepdim=True) * 0.1
    p = dict(W_enc=W_dec.t().clone(), W_dec=W_dec, b_dec=torch.zeros(d_in), **extra)
    p = {n: v.to(dev) for n, v in p.items()}
    for v in p.values(): v.requires_grad_(True)
    return p, torch.optim.Adam(p.values(), lr=5e-5, betas=(0.9, 0.999))

def rect(x): return ((x > -0.5) & (x < 0.5)).to(x)

class JumpReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, th):
        ctx.save_for_backward(x, th); return x * (x > th)
    @staticmethod
    def backward(ctx, g):
        x, th = ctx.saved_tensors
        return (x > th) * g, (-(th / bw) * rect((x - th) / bw) * g).sum(0)

class Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, th):
        ctx.save_for_backward(x, th); return (x > th).to(x)
    @staticmethod
    def backward(ctx, g):
        x, th = ctx.saved_tensors
        return torch.zeros_like(x), (-(1.0 / bw) * rect((x - th) / bw) * g).sum(0)

def gated(p, x, l1=5.0):
    xt = x - p["b_dec"]
    pi_gate = xt @ p["W_enc"] + p["b_gate"]
    pi_mag = xt @ (p["W_enc"] * p["r_mag"].exp()) + p["b_mag"]
    f = (pi_gate > 0).to(x) * torch.relu(pi_mag)
    x_hat = f @ p["W_dec"] + p["b_dec"]
    mse = (x_hat - x).pow(2).sum(-1).mean()
    act = torch.relu(pi_gate)
    sp = (act * p["W_dec"].norm(dim=1)).sum(-1).mean()
    aux = (act @ p["W_dec"].detach() + p["b_dec"].detach() - x).pow(2).sum(-1).mean()
    return mse + l1 * sp + aux

def jumprelu(p, x, l0=1.0):
    pre = (x - p["b_dec"]) @ p["W_enc"] + p["b_enc"]
    th = p["log_threshold"].exp()
    f = JumpReLU.apply(pre, th)
    x_hat = f @ p["W_dec"] + p["b_dec"]
    mse = (x_hat - x).pow(2).sum(-1).mean()
    return mse + l0 * Step.apply(pre, th).sum(-1).mean()

def standard(p, x, l1=5.0):
    f = torch.relu((x - p["b_dec"]) @ p["W_enc"] + p["b_enc"])
    x_hat = f @ p["W_dec"] + p["b_dec"]
    mse = (x_hat - x).pow(2).sum(-1).mean()
    sp = (f * p["W_dec"].norm(dim=1)).sum(-1).mean()
    return mse + l1 * sp

def topk(p, x):
    pre = (x - p["b_dec"]) @ p["W_enc"] + p["b_enc"]
    v, i = pre.topk(k, dim=-1)
    f = torch.zeros_like(pre).scatter(-1, i, torch.relu(v))
    x_hat = f @ p["W_dec"] + p["b_dec"]
    return (x_hat - x).pow(2).sum(-1).mean()

def batchtopk(p, x):
    pre = torch.relu((x - p["b_dec"]) @ p["W_enc"] + p["b_enc"])
    v, i = pre.flatten().topk(k * x.shape[0])
    f = torch.zeros_like(pre).flatten().scatter(-1, i, v).view(pre.shape)
    x_hat = f @ p["W_dec"] + p["b_dec"]
    return (x_hat - x).pow(2).sum(-1).mean()

extras = {
    "gated": lambda: dict(b_gate=torch.zeros(d_sae), b_mag=torch.zeros(d_sae), r_mag=torch.zeros(d_sae)),
    "jumprelu": lambda: dict(b_enc=torch.zeros(d_sae), log_threshold=torch.full((d_sae,), 0.001).log()),
    "batchtopk": lambda: dict(b_enc=torch.zeros(d_sae)),
    "standard": lambda: dict(b_enc=torch.zeros(d_sae)),
    "topk": lambda: dict(b_enc=torch.zeros(d_sae)),
}
x_all = torch.randn(4, B, d_in).to(dev)
def sync():
    if dev.type == "cuda": torch.cuda.synchronize()
for name in archs:
    fn = globals()[name]
    p, opt = make(extras[name]())
    for s in range(steps + 1):
        if s == 1: sync(); t0 = time.perf_counter()
        loss = fn(p, x_all[s % 4]); opt.zero_grad(); loss.backward(); opt.step()
    sync()
    dt = (time.perf_counter() - t0) / steps
    print(f"{name} d_in={d_in} d_sae={d_sae} B={B} threads={torch.get_num_threads()}: {dt*1e3:.0f} ms/step, {B/dt:.0f} tokens/s")
