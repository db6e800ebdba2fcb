//! placeholder
use crate::config::GoroosterConfig;
use crate::jobs::JobService;
pub fn router(_jobs: JobService, _cfg: GoroosterConfig) -> axum::Router {
    axum::Router::new()
}
