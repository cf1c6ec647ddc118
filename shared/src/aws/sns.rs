//! Alerts to the stack's SNS topic (`AlertTopic`): one message per alert, its subject the
//! alert's one line (SNS allows 100 characters) and its body what happened and where to look.

use crate::model::alert::Alert;
use crate::ports::{AlertError, AlertSink};
use async_trait::async_trait;

pub struct SnsAlerts {
    client: aws_sdk_sns::Client,
    topic_arn: String,
}

impl SnsAlerts {
    pub fn new(client: aws_sdk_sns::Client, topic_arn: &str) -> SnsAlerts {
        SnsAlerts {
            client,
            topic_arn: topic_arn.to_string(),
        }
    }
}

/// SNS refuses a subject over 100 characters, or with a line break.
fn subject(alert: &Alert) -> String {
    let line: String = alert.subject.replace(['\n', '\r'], " ");
    if line.chars().count() <= 100 {
        return line;
    }
    let mut cut: String = line.chars().take(99).collect();
    cut.push('…');
    cut
}

#[async_trait]
impl AlertSink for SnsAlerts {
    async fn publish(&self, alerts: &[Alert]) -> Result<(), AlertError> {
        let mut failures = Vec::new();
        for alert in alerts {
            let body = format!(
                "{}\n\nkind: {}\nsource: {}\nsession: {}\nlink: {}",
                alert.body,
                alert.kind.as_str(),
                alert.source_id,
                alert.session_id.as_deref().unwrap_or("-"),
                alert.link
            );
            let sent = self
                .client
                .publish()
                .topic_arn(&self.topic_arn)
                .subject(subject(alert))
                .message(body)
                .message_attributes(
                    "kind",
                    aws_sdk_sns::types::MessageAttributeValue::builder()
                        .data_type("String")
                        .string_value(alert.kind.as_str())
                        .build()
                        .map_err(|e| AlertError(e.to_string()))?,
                )
                .send()
                .await;
            if let Err(e) = sent {
                failures.push(format!(
                    "SNS publish of the {} alert: {}",
                    alert.kind.as_str(),
                    aws_smithy_types::error::display::DisplayErrorContext(&e)
                ));
            }
        }
        match failures.is_empty() {
            true => Ok(()),
            false => Err(AlertError(failures.join("; "))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::alert::AlertKind;

    #[test]
    fn a_long_subject_is_cut_to_what_sns_accepts() {
        let alert = Alert {
            kind: AlertKind::SessionFailed,
            source_id: "s".into(),
            session_id: None,
            at: chrono::Utc::now(),
            subject: format!("Trawl: {}\nmore", "é".repeat(150)),
            body: String::new(),
            link: String::new(),
        };
        let s = subject(&alert);
        assert!(s.chars().count() <= 100, "{}", s.chars().count());
        assert!(!s.contains('\n'));
    }
}
