//! Resolution of connection settings, and the guarantee that no error shows a password.

use super::*;

#[test]
fn masks_passwords() {
    assert_eq!(
        mask_url("postgres://bob:s3cret@db:5432/app"),
        "postgres://bob:***@db:5432/app"
    );
}
