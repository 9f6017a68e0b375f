"""Optional VPC mode (``predmaint.vpc.enabled``): a network stack with private isolated subnets only.

No internet gateway and no NAT: SageMaker jobs, the hosted model and the Lambdas reach AWS only
through an S3 gateway endpoint and interface endpoints (private DNS). ``jobs_sg`` is the one
security group of the workload: traffic within itself (distributed training, inter-container
traffic) and HTTPS out (the only routes are the VPC itself and the S3 gateway endpoint). The
interface endpoints accept HTTPS from that group only. VPC flow logs go to a CloudWatch log group
encrypted with the project key.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from stacks.config import AppConfig
from stacks.retention import retention

INTERFACE_ENDPOINTS: dict[str, ec2.InterfaceVpcEndpointAwsService] = {
    "SageMakerApi": ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_API,
    "SageMakerRuntime": ec2.InterfaceVpcEndpointAwsService.SAGEMAKER_RUNTIME,
    "Sts": ec2.InterfaceVpcEndpointAwsService.STS,
    "Logs": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_LOGS,
    "EcrApi": ec2.InterfaceVpcEndpointAwsService.ECR,
    "EcrDocker": ec2.InterfaceVpcEndpointAwsService.ECR_DOCKER,
    "Kms": ec2.InterfaceVpcEndpointAwsService.KMS,
    "Ssm": ec2.InterfaceVpcEndpointAwsService.SSM,
    "States": ec2.InterfaceVpcEndpointAwsService.STEP_FUNCTIONS,
    "Sns": ec2.InterfaceVpcEndpointAwsService.SNS,
    "Monitoring": ec2.InterfaceVpcEndpointAwsService.CLOUDWATCH_MONITORING,
    "XRay": ec2.InterfaceVpcEndpointAwsService.XRAY,  # the Lambdas' active tracing
}

# ENI management by SageMaker on behalf of the execution role (Describe* have no resource-level permissions)
SAGEMAKER_ENI_DESCRIBE = ["ec2:DescribeDhcpOptions", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSecurityGroups",
                          "ec2:DescribeSubnets", "ec2:DescribeVpcs"]
SAGEMAKER_ENI_MANAGE = ["ec2:CreateNetworkInterface", "ec2:CreateNetworkInterfacePermission",
                        "ec2:DeleteNetworkInterface", "ec2:DeleteNetworkInterfacePermission"]
LAMBDA_ENI_DESCRIBE = ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"]
LAMBDA_ENI_MANAGE = ["ec2:AssignPrivateIpAddresses", "ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface",
                     "ec2:UnassignPrivateIpAddresses"]


class NetworkStack(cdk.Stack):
    """VPC (isolated subnets, endpoints, flow logs) and the workload security group."""

    def __init__(self, scope: Construct, construct_id: str, *, config: AppConfig, key_arn: str, **kwargs) -> None:
        super().__init__(scope, construct_id, description=f"{config.project}: private network (VPC mode)", **kwargs)
        v = config.vpc
        self.vpc = ec2.Vpc(
            self, "Vpc", ip_addresses=ec2.IpAddresses.cidr(v.cidr),
            # explicit AZs: the stack is account-agnostic, so Fn::GetAZs would cap it at two
            availability_zones=[f"{config.region}{z}" for z in "abc"[:v.max_azs]],
            nat_gateways=0, restrict_default_security_group=False,
            subnet_configuration=[ec2.SubnetConfiguration(name="isolated",
                                                          subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)],
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3),
                # the stream's state table (predmaint.stream.enabled): the rebuild job reads and writes it
                **({"DynamoDB": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.DYNAMODB)}
                   if config.stream.enabled else {})})
        self.flow_log_group = logs.LogGroup(
            self, "FlowLogs", log_group_name=f"/{config.project}/vpc-flow-logs",
            encryption_key=kms.Key.from_key_arn(self, "ProjectKey", key_arn),
            retention=retention(config.pipeline.log_retention_days), removal_policy=cdk.RemovalPolicy.DESTROY)
        self.vpc.add_flow_log("FlowLog", destination=ec2.FlowLogDestination.to_cloud_watch_logs(self.flow_log_group),
                              traffic_type=ec2.FlowLogTrafficType.ALL)

        self.jobs_sg = ec2.SecurityGroup(
            self, "JobsSecurityGroup", vpc=self.vpc, allow_all_outbound=False,
            description=f"{config.project} SageMaker jobs, model and Lambdas: within itself and HTTPS out")
        self.jobs_sg.add_ingress_rule(self.jobs_sg, ec2.Port.all_traffic(), "inter-container traffic")
        self.jobs_sg.add_egress_rule(self.jobs_sg, ec2.Port.all_traffic(), "inter-container traffic")
        # no IGW/NAT: 443 reaches only the interface endpoints (VPC CIDR) and S3 via the gateway endpoint
        self.jobs_sg.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS to the VPC endpoints and S3")

        self.endpoint_sg = ec2.SecurityGroup(self, "EndpointSecurityGroup", vpc=self.vpc, allow_all_outbound=False,
                                             description=f"{config.project} interface VPC endpoints")
        self.endpoint_sg.add_ingress_rule(self.jobs_sg, ec2.Port.tcp(443), "HTTPS from the workload")
        self.subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED)
        self.interface_endpoints = {
            name: self.vpc.add_interface_endpoint(name, service=service, private_dns_enabled=True,
                                                  subnets=self.subnets, security_groups=[self.endpoint_sg], open=False)
            for name, service in INTERFACE_ENDPOINTS.items()}

    @property
    def subnet_ids(self) -> list[str]:
        return self.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED).subnet_ids

    def sagemaker_vpc_config(self) -> dict[str, Any]:
        """``VpcConfig`` of a SageMaker API request (processing/training/tuning jobs, CreateModel)."""
        return {"SecurityGroupIds": [self.jobs_sg.security_group_id], "Subnets": self.subnet_ids}

    def eni_statements(self, scope: Construct, *, lambda_: bool = False) -> list[iam.PolicyStatement]:
        """ENI permissions. SageMaker: Describe* on ``*`` (no resource-level permissions), create/delete only
        in the project's subnets and security group and on ENIs. Lambda validates its role with an
        unscoped dry run when the function is created, so its four ENI actions must be on ``*``."""
        if lambda_:
            return [iam.PolicyStatement(actions=sorted(LAMBDA_ENI_DESCRIBE + LAMBDA_ENI_MANAGE), resources=["*"])]
        stack = cdk.Stack.of(scope)
        ec2_arn = lambda res: f"arn:{stack.partition}:ec2:{stack.region}:{stack.account}:{res}"  # noqa: E731
        eni = ec2_arn("network-interface/*")
        return [
            iam.PolicyStatement(actions=SAGEMAKER_ENI_DESCRIBE, resources=["*"]),
            iam.PolicyStatement(actions=["ec2:CreateNetworkInterface"], resources=[
                eni, ec2_arn(f"security-group/{self.jobs_sg.security_group_id}"),
                *[ec2_arn(f"subnet/{s}") for s in self.subnet_ids]]),
            iam.PolicyStatement(actions=["ec2:CreateNetworkInterfacePermission", "ec2:DeleteNetworkInterface",
                                         "ec2:DeleteNetworkInterfacePermission"], resources=[eni]),
        ]
