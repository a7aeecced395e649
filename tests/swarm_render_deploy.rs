//! `mlmodel render` output deploys as-is with `docker stack deploy`.

mod common;

use common::{StackGuard, docker_cli, stack_services, swarm, unique_name};
use std::io::Write;
use std::process::{Command, Stdio};

#[tokio::test(flavor = "multi_thread")]
async fn rendered_examples_deploy_with_docker_stack_deploy() {
    if swarm().await.is_none() {
        return;
    }
    let repo = env!("CARGO_MANIFEST_DIR");
    for (manifest, model, replicas, image) in [
        (
            "demo_model.yml",
            "demo_model",
            "2",
            "qarlm/static-http-response-server:1",
        ),
        (
            "sentiment.yml",
            "sentiment",
            "1",
            "mlmodel-test/static-http:1",
        ),
    ] {
        let rendered = Command::new(env!("CARGO_BIN_EXE_mlmodel"))
            .current_dir(repo)
            .args(["render", &format!("manifests/{manifest}")])
            .output()
            .expect("mlmodel runs");
        assert!(
            rendered.status.success(),
            "{}",
            String::from_utf8_lossy(&rendered.stderr)
        );
        let stack = StackGuard::new(unique_name(model));
        let mut deploy = Command::new("docker")
            .args([
                "stack",
                "deploy",
                "--resolve-image",
                "never",
                "-c",
                "-",
                stack.name(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker runs");
        deploy
            .stdin
            .take()
            .expect("stdin")
            .write_all(&rendered.stdout)
            .expect("compose file written");
        let output = deploy.wait_with_output().expect("docker stack deploy ends");
        assert!(
            output.status.success(),
            "docker stack deploy refused mlmodel's render of {manifest}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let service = format!("{}_mlmodel", stack.name());
        assert_eq!(stack_services(stack.name()), vec![service.clone()]);
        let inspected = docker_cli(&[
            "service",
            "inspect",
            &service,
            "--format",
            "{{.Spec.Mode.Replicated.Replicas}} {{.Spec.TaskTemplate.ContainerSpec.Image}} {{index .Spec.Labels \"mlmodel.build-id\"}}",
        ]);
        let line = String::from_utf8_lossy(&inspected.stdout)
            .trim()
            .to_string();
        let parts: Vec<&str> = line.split(' ').collect();
        assert_eq!(parts[0], replicas, "{line}");
        assert_eq!(parts[1], image, "{line}");
        assert!(!parts[2].is_empty(), "build id label present: {line}");
    }
}
