// Building blocks of the cost model (declared in cost_model.hpp): kernel kinds and shapes, link
// loads per port and NIC, and the sums of phases and links.
#include <algorithm>

#include "core/error.hpp"
#include "cost/cost_model.hpp"

namespace moe {

const char* kernel_kind_name(KernelKind k) {
  switch (k) {
    case KernelKind::gemm: return "gemm";
    case KernelKind::attention: return "attention";
    case KernelKind::rms_norm: return "rms_norm";
    case KernelKind::silu: return "silu";
    case KernelKind::add: return "add";
    case KernelKind::copy: return "copy";
    case KernelKind::gather: return "gather";
    case KernelKind::combine: return "combine";
    case KernelKind::upload: return "upload";
    case KernelKind::download: return "download";
    case KernelKind::host_route: return "host_route";
    case KernelKind::host_plan: return "host_plan";
    case KernelKind::count: break;
  }
  return "?";
}

// ---- link loads ----

LinkLoads::LinkLoads(const Topology& topo, int nics_per_node)
    : port_sent(topo.num_ranks(), 0.0), port_recv(topo.num_ranks(), 0.0),
      nic_sent(static_cast<size_t>(topo.nodes()) * std::max(1, nics_per_node), 0.0), nic_recv(nic_sent) {}

void LinkLoads::add(const Topology& topo, int nics_per_node, int src, int dst, double bytes) {
  switch (topo.link(src, dst)) {
    case LinkClass::self: return;
    case LinkClass::intra_node:
      port_sent[src] += bytes;
      port_recv[dst] += bytes;
      intra_bytes += bytes;
      return;
    case LinkClass::inter_node: {
      const int nics = std::max(1, nics_per_node);
      nic_sent[static_cast<size_t>(topo.node_of(src)) * nics + topo.gpu_of(src) % nics] += bytes;
      nic_recv[static_cast<size_t>(topo.node_of(dst)) * nics + topo.gpu_of(dst) % nics] += bytes;
      inter_bytes += bytes;
      return;
    }
  }
}

void LinkLoads::add_scaled(const LinkLoads& o, double scale) {
  if (port_sent.empty()) {
    *this = o;
    for (auto* v : {&port_sent, &port_recv, &nic_sent, &nic_recv})
      for (double& x : *v) x *= scale;
    intra_bytes *= scale;
    inter_bytes *= scale;
    return;
  }
  MOE_REQUIRE(o.port_sent.size() == port_sent.size() && o.nic_sent.size() == nic_sent.size(),
              "link loads of different topologies");
  for (size_t i = 0; i < port_sent.size(); ++i) {
    port_sent[i] += scale * o.port_sent[i];
    port_recv[i] += scale * o.port_recv[i];
  }
  for (size_t i = 0; i < nic_sent.size(); ++i) {
    nic_sent[i] += scale * o.nic_sent[i];
    nic_recv[i] += scale * o.nic_recv[i];
  }
  intra_bytes += scale * o.intra_bytes;
  inter_bytes += scale * o.inter_bytes;
}

namespace {
double max_of(const std::vector<double>& v) { return v.empty() ? 0.0 : *std::max_element(v.begin(), v.end()); }
}  // namespace

double LinkLoads::max_port() const { return std::max(max_of(port_sent), max_of(port_recv)); }
double LinkLoads::max_nic() const { return std::max(max_of(nic_sent), max_of(nic_recv)); }
double LinkLoads::max_port_sent() const { return max_of(port_sent); }
double LinkLoads::max_nic_sent() const { return max_of(nic_sent); }

// ---- kernels ----

double Op::flops() const {
  double f = 0;
  for (const Kernel& k : kernels) f += k.flops;
  return f;
}
double Op::hbm_bytes() const {
  double b = 0;
  for (const Kernel& k : kernels)
    if (k.kind != KernelKind::upload && k.kind != KernelKind::download && k.kind != KernelKind::host_route &&
        k.kind != KernelKind::host_plan)
      b += k.bytes;
  return b;
}

Kernel gemm_kernel(double m, int64_t k, int64_t n, int eb) {
  Kernel g;
  g.kind = KernelKind::gemm;
  g.flops = 2.0 * m * double(k) * double(n);
  g.bytes = (m * k + double(k) * n + m * n) * eb;
  g.m = m;
  g.k = k;
  g.n = n;
  return g;
}

// Reads q and the new k/v rows, appends k/v to the cache, reads the cached context, writes the output;
// the score block (fp32 scores, softmax in place, probabilities) makes ~3 passes of 4 bytes per score.
Kernel attention_kernel(int64_t seqs, int64_t heads, int64_t head_dim, int64_t new_len, int64_t past_len, int eb) {
  const double ctx = double(past_len + new_len);
  const double rows_hd = double(seqs) * new_len * heads * head_dim;
  Kernel a;
  a.kind = KernelKind::attention;
  a.flops = double(seqs) * heads * 4.0 * new_len * ctx * head_dim;
  a.bytes = (rows_hd * 6 + double(seqs) * ctx * heads * head_dim * 2) * eb + double(seqs) * heads * new_len * ctx * 12.0;
  return a;
}

// ---- totals ----

double CostTotals::flops() const {
  double f = 0;
  for (const auto& p : phases) f += p.flops;
  return f;
}
double CostTotals::hbm_bytes() const {
  double b = 0;
  for (const auto& p : phases) b += p.hbm_bytes;
  return b;
}
void CostTotals::add(const CostTotals& o) {
  for (int i = 0; i < kNumPhases; ++i) {
    phases[i].flops += o.phases[i].flops;
    phases[i].hbm_bytes += o.phases[i].hbm_bytes;
  }
  if (!o.links.port_sent.empty()) links.add_scaled(o.links, 1.0);
}

}  // namespace moe
