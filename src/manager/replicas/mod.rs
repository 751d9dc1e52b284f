//! Services: a declared number of replicas of a task template, kept running one task per
//! slot. Pure, without I/O or tonic: [`spec`] checks what a client declares, [`plan`] decides
//! what the reconciler does for one service from what exists, [`rollout`] judges a rolling
//! update, [`history`] keeps its record of rollouts. The core applies the plan
//! (`core::services`) and the supervisor runs it as a level-triggered loop.

pub mod history;
pub mod plan;
pub mod rollout;
pub mod spec;

pub use plan::{plan, Action, Desired, Reason, SlotTask};
pub use rollout::{check_config, judge, Config, Judgement};
pub use spec::{check_service_name, check_service_spec, MAX_REPLICAS, MAX_SERVICES};
