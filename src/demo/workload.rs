//! The synthetic application workload of the demo.
