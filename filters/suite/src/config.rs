//! The suite's configuration: one optional section per policy, each the policy's own JSON.

use meshwall_headers::config::HeadersConfig;
use meshwall_jwt::config::JwtConfig;
use meshwall_ratelimit::config::RateLimitConfig;
use meshwall_validate::config::ValidateConfig;
use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteConfig {
    #[serde(default)]
    pub headers: Option<HeadersConfig>,
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
    #[serde(default)]
    pub ratelimit: Option<RateLimitConfig>,
    #[serde(default)]
    pub validate: Option<ValidateConfig>,
}
