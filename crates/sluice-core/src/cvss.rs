//! CVSS 3.0, 3.1 and 4.0 vectors: parsing and scoring (owned by the cvss work; placeholder).
