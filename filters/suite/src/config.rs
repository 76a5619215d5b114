//! The suite's configuration: one optional section per policy, each the policy's own JSON.

use meshwall_access::config::AccessConfig;
use meshwall_apikey::config::ApiKeyConfig;
use meshwall_cors::config::CorsConfig;
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
    pub access: Option<AccessConfig>,
    #[serde(default)]
    pub cors: Option<CorsConfig>,
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
    #[serde(default)]
    pub apikey: Option<ApiKeyConfig>,
    #[serde(default)]
    pub ratelimit: Option<RateLimitConfig>,
    #[serde(default)]
    pub validate: Option<ValidateConfig>,
}
