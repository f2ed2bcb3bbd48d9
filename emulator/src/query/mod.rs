//! Query semantics: the BSON comparison order, exact numeric comparison, dotted paths,
//! filters, projections, sorting, update operators and `_id` range planning.

pub mod filter;
pub mod number;
pub mod order;
pub mod path;
pub mod plan;
pub mod projection;
pub mod sort;
pub mod update;
mod update_array;
