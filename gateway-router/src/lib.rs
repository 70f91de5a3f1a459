//! The front router (classification, pools, failover). Built in a later issue; see ARCHITECTURE §4.
