// Rows an ep rank receives in one part (chunk or micro-batch) of a step: the bound its receive
// buffers are allocated for (strategies/ep.cpp) and the memory estimate counts (cost/memory.cpp).
#pragma once
#include <cstdint>
#include <vector>

#include "core/config.hpp"

namespace moe {

// Multiplier of the balanced receive rows for routing by the gate, where the rows follow the data:
// the gate's weights favour some experts, and the busiest rank of the shipped 16-rank config
// receives 2.25x the balanced rows (two growth steps of 1.5x).
constexpr double kGateReceiveHeadroom = 2.25;
// Standard deviations of sampling noise added to the expected rows under synthetic routing.
constexpr double kReceiveSamplingSigmas = 4;

// Receive rows per part an ep rank's buffers are sized for, at least the balanced rows
// a = part rows * top_k * expert_tp.
//   gate, trace:  ceil(a * kGateReceiveHeadroom)
//   synthetic:    the prefill (multipliers are 1 there: balancing resets every iteration) bound
//                 N = ranks * part_rows * top_h_inclusion(shares, k, hosted), maximised over layers
//                 and, with local:p, the source's node (drift starts at epoch 1, after the prefill;
//                 past about 1e7 steps of the integral, min(hosted, k) instead of top_h_inclusion),
//                 plus kReceiveSamplingSigmas * sqrt(min(hosted, k) * N) + min(hosted, k); decode
//                 parts, under every drift epoch and balancing multiplier, at most ranks * rows *
//                 min(hosted, k); with capacity_factor, at most hosted * capacity of the step.
int64_t ep_receive_rows(const Config& c, const StrategyConfig& s);

// Upper bound on the expected number of a token's top-k choices that land in the `hosted` experts
// with the largest shares, when the k experts are drawn without replacement in proportion to
// `shares` (the Gumbel top-k of synthetic routing): the sum of their inclusion probabilities, each
// an integral over the exponential race bounded by an upper Riemann sum of `points` points (the
// integrand is increasing). At most min(hosted, k).
double top_inclusion_sum(const std::vector<double>& shares, int k, int hosted, int points = 256);

}  // namespace moe
