// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @notice Base for the test contract wallets: an open `execute`, so tests can make a contract
///         account send token transfers (the log's `from` is then the wallet's address).
/// @dev No access control on purpose: local chains only.
abstract contract OpenExecutor {
    function execute(address target, bytes calldata data) external payable returns (bytes memory) {
        (bool ok, bytes memory result) = target.call{value: msg.value}(data);
        if (!ok) {
            assembly {
                revert(add(result, 32), mload(result))
            }
        }
        return result;
    }

    receive() external payable {}
}

/// @title AlwaysValidWallet
/// @notice EIP-1271 wallet that accepts every signature (returns the magic value 0x1626ba7e).
contract AlwaysValidWallet is OpenExecutor {
    function isValidSignature(bytes32, bytes calldata) external pure returns (bytes4) {
        return 0x1626ba7e;
    }
}

/// @title NeverValidWallet
/// @notice EIP-1271 wallet that rejects every signature (returns 0xffffffff).
contract NeverValidWallet is OpenExecutor {
    function isValidSignature(bytes32, bytes calldata) external pure returns (bytes4) {
        return 0xffffffff;
    }
}
