//! Plain data: what Trawl knows about sources, sessions, resources and records.

pub mod alert;
pub mod ledger;
pub mod reason;
pub mod record;
pub mod resource;
pub mod schedule;
pub mod selection;
pub mod session;
pub mod source;
pub mod sources_file;

pub use ledger::{
    Closing, Counting, Marker, PageCommit, PageState, SessionStart, SourceEntry, Tally,
};
pub use reason::{Reason, ReasonCode};
pub use record::{BoundingBox, Dates, Identifier, Link, Record, TimeRange, Translation, Variable};
pub use resource::{
    ByteRange, Content, HistoryEntry, Outcome, RawLocation, RecordChange, ResourceState,
    HISTORY_LEN,
};
pub use schedule::Schedule;
pub use session::{Counters, ListingCheck, Session, SessionStatus, Trigger};
pub use source::{
    refuse_duplicate_ids, ConfigError, Protocol, RawStorage, Source, SourceOptions, SourceSpec,
    StaleAction,
};
