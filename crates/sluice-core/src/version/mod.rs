//! Version ordering per ecosystem (owned by the version work; placeholder).
